//! Recordings behind the `record` grant, and download links signed for an hour.

use super::*;

#[tokio::test]
async fn issue11_recordings_need_the_record_grant_and_download_links_are_signed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured(&["--recordings-dir", dir.path().to_str().context("utf-8")?])?;
    let base = server.base_url();
    let join = mint(&["--room", "rec", "--identity", "dee", "--grant", "join"])?;
    let record = mint(&["--room", "rec", "--identity", "desk", "--grant", "record"])?;
    let dee = TestClient::join_with(
        base,
        "rec",
        Role::Contributor,
        Some(SendMedia::new(colours::RED, 440.0)),
        "Dee",
        join_options(&join),
    )
    .await?;
    let recordings = url(&server, "/rooms/rec/recordings")?;
    let empty = || Some(("application/json", "{}".to_owned()));
    let r = http::send(Method::POST, &recordings, None, empty()).await?;
    assert_refused("recording without a token", &r, 401, "unauthorized");
    let r = http::send(Method::POST, &recordings, Some(&join), empty()).await?;
    assert_refused("recording with a join token", &r, 403, "forbidden");
    let r = http::send(Method::GET, &recordings, Some(&join), None).await?;
    assert_refused("listing with a join token", &r, 403, "forbidden");
    let r = http::send(Method::POST, &recordings, Some(&record), empty()).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let started = r.json()?;
    let id = started["id"].as_str().context("an id")?.to_owned();

    // Some media in the file, then stop (the answer comes once the file is complete).
    eventually(DEADLINE, "a recording with media in it", || async {
        let list = http::send(Method::GET, &recordings, Some(&record), None)
            .await?
            .json()?;
        let bytes = list[0]["bytes"].as_u64().unwrap_or(0);
        Ok((bytes > 20_000).then_some(()))
    })
    .await?;
    let stop = url(&server, &format!("/rooms/rec/recordings/{id}"))?;
    let r = http::send(Method::DELETE, &stop, Some(&record), None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = http::send(Method::GET, &recordings, Some(&record), None)
        .await?
        .json()?;
    let link = list[0]["download_url"].as_str().context("a download_url")?;
    assert!(link.contains("exp=") && link.contains("sig="), "{link}");

    // The signed link needs no token: a player fetches it as it is.
    let file = url(&server, link)?;
    let response = http::client()?.get(file.clone()).send().await?;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await?;
    assert!(
        bytes.len() > 1000 && bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]),
        "a WebM file: {} bytes",
        bytes.len()
    );
    // A tampered link, or none, needs the grant again.
    let tampered = Url::parse(&file.as_str().replace("sig=", "sig=0"))?;
    let r = http::send(Method::GET, &tampered, None, None).await?;
    assert_refused("a tampered link", &r, 401, "unauthorized");
    let mut later = file.clone();
    let exp: u64 = file
        .query_pairs()
        .find(|(k, _)| k == "exp")
        .and_then(|(_, v)| v.parse().ok())
        .context("exp")?;
    let pairs: Vec<(String, String)> = file
        .query_pairs()
        .map(|(k, v)| {
            if k == "exp" {
                (k.into_owned(), (exp + 3600).to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    later.query_pairs_mut().clear().extend_pairs(pairs);
    let r = http::send(Method::GET, &later, None, None).await?;
    assert_refused("a link with a longer life", &r, 401, "unauthorized");
    let mut bare = file.clone();
    bare.set_query(None);
    let r = http::send(Method::GET, &bare, Some(&join), None).await?;
    assert_refused("the file with a join token", &r, 403, "forbidden");
    let r = http::send(Method::GET, &bare, Some(&record), None).await?;
    assert_eq!(r.status, 200, "the file with the record grant");
    dee.disconnect().await;
    Ok(())
}
