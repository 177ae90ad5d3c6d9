//! The room grid's geometry: pure functions from a tile count and a canvas to rectangles.
//! Tiles are filled in join order, row by row; a tile keeps its source's aspect ratio inside its
//! rectangle (the compositor letterboxes on the background), so only the rectangles live here.

use crate::types::Rect;

/// The largest grid: 4x4.
pub const MAX_TILES: usize = 16;

/// Columns and rows of the grid for `count` tiles: 1 → 1x1, 2 → 2x1, 3-4 → 2x2, 5-6 → 3x2,
/// 7-9 → 3x3, 10-16 → 4x4 (more than 16 is clamped to 4x4).
pub fn grid(count: usize) -> (u32, u32) {
    match count {
        0 | 1 => (1, 1),
        2 => (2, 1),
        3 | 4 => (2, 2),
        5 | 6 => (3, 2),
        7..=9 => (3, 3),
        _ => (4, 4),
    }
}

/// The rectangles of `count` tiles on a `width` x `height` canvas, in join order. Edges are
/// rounded down to even pixels (I420 chroma) and neighbouring tiles share edges exactly, so the
/// grid covers the canvas with no seams.
pub fn tiles(count: usize, width: u32, height: u32) -> Vec<Rect> {
    let (cols, rows) = grid(count);
    let mut cells = cells(cols, rows, width, height);
    cells.truncate(count.min(MAX_TILES));
    cells
}

/// The `cols` x `rows` cells of a `width` x `height` area, row by row, on even edges that
/// neighbours share.
pub fn cells(cols: u32, rows: u32, width: u32, height: u32) -> Vec<Rect> {
    let (cols, rows) = (cols.max(1), rows.max(1));
    let edge =
        |i: u32, n: u32, total: u32| -> i32 { ((total as u64 * i as u64 / n as u64) & !1) as i32 };
    (0..cols * rows)
        .map(|i| {
            let (c, r) = (i % cols, i / cols);
            let x = edge(c, cols, width);
            let y = edge(r, rows, height);
            let x2 = if c + 1 == cols {
                width as i32
            } else {
                edge(c + 1, cols, width)
            };
            let y2 = if r + 1 == rows {
                height as i32
            } else {
                edge(r + 1, rows, height)
            };
            Rect {
                x,
                y,
                width: x2 - x,
                height: y2 - y,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_by_count() {
        let expected = [
            (1, (1, 1)),
            (2, (2, 1)),
            (3, (2, 2)),
            (4, (2, 2)),
            (5, (3, 2)),
            (6, (3, 2)),
            (7, (3, 3)),
            (9, (3, 3)),
            (10, (4, 4)),
            (16, (4, 4)),
        ];
        for (n, g) in expected {
            assert_eq!(grid(n), g, "count {n}");
        }
    }

    #[test]
    fn one_tile_is_the_canvas() {
        assert_eq!(
            tiles(1, 1280, 720),
            vec![Rect {
                x: 0,
                y: 0,
                width: 1280,
                height: 720
            }]
        );
    }

    #[test]
    fn three_tiles_fill_a_2x2_in_join_order() {
        let t = tiles(3, 1280, 720);
        assert_eq!(
            t[0],
            Rect {
                x: 0,
                y: 0,
                width: 640,
                height: 360
            }
        );
        assert_eq!(
            t[1],
            Rect {
                x: 640,
                y: 0,
                width: 640,
                height: 360
            }
        );
        assert_eq!(
            t[2],
            Rect {
                x: 0,
                y: 360,
                width: 640,
                height: 360
            }
        );
    }

    #[test]
    fn tiles_cover_the_canvas_without_overlap() {
        for n in 1..=MAX_TILES {
            let (cols, rows) = grid(n);
            let full = tiles((cols * rows) as usize, 1000, 562);
            let area: i64 = full.iter().map(|r| r.width as i64 * r.height as i64).sum();
            assert_eq!(area, 1000 * 562, "count {n}");
            for r in &full {
                assert!(r.x % 2 == 0 && r.y % 2 == 0, "even origin for {n}: {r:?}");
            }
        }
    }
}
