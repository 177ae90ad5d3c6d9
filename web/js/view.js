// The viewer page for kiosks and wall screens: receive-only over WHEP, full screen, no device
// prompts. It keeps itself connected: when frames stop (server restart, network drop) or the
// connection fails, it tears down and reconnects with back-off (0.5 s doubling to 5 s), and it
// says what it is doing on screen. `window.tesseraView` exposes its state to tests.

import {
  HttpSession, TOKEN_NEEDED, describeJoinError, fetchIceServers, tokenMissing, unreachable,
} from './whip.js';
import { RoomWatch } from './events.js';

const params = new URLSearchParams(location.search);
const room = (params.get('room') || '').trim();
// The access token of the link (`?token=`), if the server needs one.
const token = params.get('token') || '';
const video = document.getElementById('mix');
const statusEl = document.getElementById('status');
const unmute = document.getElementById('unmute');

/** Frames must advance at least this often once connected, or the viewer reconnects. */
const STALL_MS = 3000;
/** How long a connection may take to show its first frame. */
const FIRST_FRAME_MS = 8000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];

const view = {
  room,
  pc: null,
  session: null,
  connects: 0, // connections that decoded frames
  attempts: 0, // failures since the last good connection
  framesDecoded: 0,
  width: 0,
  height: 0,
  participants: 0,
  lastProblem: '',
};
window.tesseraView = view;

let watchdog = null;
let retryTimer = null;
let mediaOk = false;

function show(sentence) {
  statusEl.textContent = sentence;
}

function updateStatus() {
  if (!mediaOk) return;
  show(view.participants === 0 ? `Waiting for the room "${room}" to start…` : '');
}

async function play() {
  try {
    video.muted = false;
    await video.play();
    unmute.hidden = true;
  } catch (e) {
    // Without a user gesture the browser may refuse sound: play muted, offer a button.
    video.muted = true;
    unmute.hidden = false;
    try {
      await video.play();
    } catch (_) {
      // It will start when the stream does.
    }
  }
}

function teardown() {
  clearInterval(watchdog);
  watchdog = null;
  mediaOk = false;
  const { pc, session } = view;
  view.pc = null;
  view.session = null;
  if (session) session.stop();
  if (pc) pc.close();
}

function retry(reason) {
  teardown();
  clearTimeout(retryTimer);
  const delay = BACKOFF_MS[Math.min(view.attempts, BACKOFF_MS.length - 1)];
  view.attempts += 1;
  view.lastProblem = reason;
  show(`${reason} Reconnecting in ${(delay / 1000).toFixed(1)} s…`);
  retryTimer = setTimeout(connect, delay);
}

async function inboundVideo(pc) {
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') return s;
  }
  return null;
}

async function connect() {
  show(view.connects === 0 && view.attempts === 0 ? 'Connecting…' : 'Reconnecting…');
  const iceServers = await fetchIceServers(room, token);
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers });
  view.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
    play();
  };
  let connected = false;
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'connected') connected = true;
  });
  const session = new HttpSession(`/rooms/${encodeURIComponent(room)}/whep`, { token });
  view.session = session;
  try {
    await session.start(pc);
  } catch (e) {
    if (view.pc === pc) retry(describeJoinError(e));
    return;
  }
  const started = performance.now();
  let lastFrames = -1;
  let lastProgress = performance.now();
  watchdog = setInterval(async () => {
    if (view.pc !== pc) return;
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      retry('The connection to the server was lost.');
      return;
    }
    const s = await inboundVideo(pc).catch(() => null);
    if (view.pc !== pc) return;
    const frames = (s && s.framesDecoded) || 0;
    const now = performance.now();
    if (frames > lastFrames) {
      lastFrames = frames;
      lastProgress = now;
      view.framesDecoded = frames;
      view.width = (s && s.frameWidth) || 0;
      view.height = (s && s.frameHeight) || 0;
      if (!mediaOk && frames > 0) {
        mediaOk = true;
        view.connects += 1;
        view.attempts = 0;
        updateStatus();
      }
    } else if (now - lastProgress > (mediaOk ? STALL_MS : FIRST_FRAME_MS) && now - started > 1000) {
      // Never connected at all: the network is in the way, not the room.
      retry(mediaOk ? 'The picture stopped.' : connected ? 'No picture arrived.' : unreachable(iceServers));
    }
  }, 500);
}

unmute.addEventListener('click', () => {
  video.muted = false;
  unmute.hidden = true;
});

if (!room) {
  show('Add ?room=NAME to the address to choose the room to show.');
} else if (!window.RTCPeerConnection) {
  show('This browser cannot play WebRTC streams.');
} else {
  document.title = `${room} · tessera`;
  tokenMissing(token).then((missing) => {
    if (missing) {
      show(TOKEN_NEEDED.replace('--grant join', '--grant view'));
      return;
    }
    new RoomWatch(room, (watch) => {
      view.participants = watch.participants.size;
      updateStatus();
    }, () => {}, token);
    connect();
  });
}
