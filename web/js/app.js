// The participant page: pick devices, join a room over WHIP with trickle ICE, watch the one
// mixed stream, mute, share a screen, leave; the participant list comes from the room's event
// stream.
//
// A shared screen is a session of its own (WHIP has no renegotiation): a sendonly WHIP offer
// with `?source=screen&owner=<this session's id>`, which the server shows large while it lasts
// and ends with this session.
//
// Query parameters: `room`, `name` prefill the form; `mode=view` opens the viewer page instead;
// `trickle=0` sends one complete offer after ICE gathering (to compare join times).
// `window.tessera` exposes the live objects and the measured join time to tests and curious
// people with a console.

import {
  CONNECT_DEADLINE_MS, HttpSession, TOKEN_NEEDED, describeJoinError, errorFrom, fetchIceServers,
  tokenMissing, unreachable,
} from './whip.js';
import { RoomWatch } from './events.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

if (params.get('mode') === 'view') {
  location.replace(`/view.html?room=${encodeURIComponent(params.get('room') || '')}`);
}

const state = {
  stream: null, // the local camera + microphone
  pc: null,
  senders: { audio: null, video: null },
  session: null,
  watch: null,
  selfId: null,
  micOn: true,
  camOn: true,
  joinMs: null,
  // Whether this call's media connection came up once (a later failure is a lost connection,
  // not a network that blocks it), and the relays it was given.
  connected: false,
  iceServers: [],
  trickle: params.get('trickle') !== '0',
  // The access token of the link this page was opened with (`?token=`), if the server needs one.
  token: params.get('token') || '',
  // The screen being shared: { pc, session, stream }.
  share: null,
  room: null,
  name: null,
};
window.tessera = state;

function showError(el, sentence) {
  el.textContent = sentence;
  el.hidden = !sentence;
}

function describeMediaError(e) {
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera and microphone access was refused. Allow it in the browser\'s site settings, then reload the page.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found. Plug one in, then reload the page.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera or microphone is in use by another program. Close it, then reload the page.';
    default:
      return `The camera or microphone could not be opened: ${(e && e.message) || e}`;
  }
}

async function openDevices() {
  const camera = $('camera').value;
  const mic = $('microphone').value;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $('join').disabled = true;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      // A weak client sends one modest stream; the server scales it into its tile anyway.
      video: { deviceId: camera ? { exact: camera } : undefined, width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
      audio: { deviceId: mic ? { exact: mic } : undefined, echoCancellation: true, noiseSuppression: true },
    });
  } catch (e) {
    showError($('join-error'), describeMediaError(e));
    return;
  }
  showError($('join-error'), '');
  $('preview').srcObject = state.stream;
  $('join').disabled = false;
  await listDevices();
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind] of [[$('camera'), 'videoinput'], [$('microphone'), 'audioinput']]) {
    const track = state.stream && state.stream.getTracks().find((t) => t.kind === kind.replace('input', ''));
    const current = track && track.getSettings().deviceId;
    select.replaceChildren(
      ...devices
        .filter((d) => d.kind === kind)
        .map((d, i) => new Option(d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`, d.deviceId, false, d.deviceId === current)),
    );
  }
}

function sessionIdOf(location) {
  return location ? location.split('/').pop() : null;
}

async function join(event) {
  event.preventDefault();
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (!room || !name || !state.stream) return;
  localStorage.setItem('tessera.name', name);
  showError($('join-error'), '');
  $('join').disabled = true;
  const started = performance.now();

  const iceServers = await fetchIceServers(room, state.token);
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers });
  state.pc = pc;
  state.connected = false;
  state.iceServers = iceServers;
  const audio = state.stream.getAudioTracks()[0];
  const video = state.stream.getVideoTracks()[0];
  state.senders = {
    audio: pc.addTransceiver(audio || 'audio', { direction: audio ? 'sendrecv' : 'recvonly' }).sender,
    video: pc.addTransceiver(video || 'video', { direction: video ? 'sendrecv' : 'recvonly' }).sender,
  };
  const remote = new MediaStream();
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    $('mix').srcObject = remote;
  };
  $('mix').addEventListener('loadeddata', () => {
    if (state.joinMs === null) state.joinMs = Math.round(performance.now() - started);
  }, { once: true });
  pc.onconnectionstatechange = () => onConnectionState(pc);

  const session = new HttpSession(`/rooms/${encodeURIComponent(room)}/whip?name=${encodeURIComponent(name)}`, { trickle: state.trickle, token: state.token });
  state.session = session;
  try {
    await session.start(pc);
  } catch (e) {
    pc.close();
    state.pc = null;
    state.session = null;
    showError($('join-error'), describeJoinError(e));
    $('join').disabled = false;
    return;
  }
  state.selfId = session.id || sessionIdOf(session.location);
  state.room = room;
  state.name = name;
  const keep = state.token ? `&token=${encodeURIComponent(state.token)}` : '';
  history.replaceState(null, '', `/?room=${encodeURIComponent(room)}${keep}`);
  $('room-title').textContent = room;
  $('join-view').hidden = true;
  $('call-view').hidden = false;
  setStatus('Connecting…');
  // The browser may take half a minute to give up on ICE: say sooner what is in the way.
  setTimeout(() => {
    if (state.pc === pc && !state.connected) showUnreachable();
  }, CONNECT_DEADLINE_MS);
  state.watch = new RoomWatch(room, renderPeople, (up) => {
    if (!up && state.pc) showError($('call-error'), 'Lost the room\'s event stream; trying again…');
    if (up) showError($('call-error'), '');
  }, state.token);
}

function setStatus(sentence) {
  $('stage-status').textContent = sentence;
  $('stage-status').hidden = !sentence;
}

function showUnreachable() {
  setStatus('Not connected');
  showError($('call-error'), unreachable(state.iceServers || []));
}

function onConnectionState(pc) {
  if (pc !== state.pc) return;
  switch (pc.connectionState) {
    case 'connected':
      state.connected = true;
      setStatus('');
      showError($('call-error'), '');
      break;
    case 'disconnected':
      setStatus('Connection unstable…');
      break;
    case 'failed':
      if (!state.connected) {
        showUnreachable();
        break;
      }
      setStatus('Disconnected');
      showError($('call-error'), 'The connection to the server failed. Leave and join again; if it keeps failing, the network may block WebRTC (UDP).');
      break;
    default:
      break;
  }
}

function renderPeople(watch) {
  const people = [...watch.participants.values()];
  state.peopleAt = Date.now();
  $('people').replaceChildren(
    ...people.map((p) => {
      const li = document.createElement('li');
      li.dataset.id = p.id;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = (p.name || 'Guest') + (p.id === state.selfId ? ' (you)' : '');
      const flags = document.createElement('span');
      flags.className = 'flags';
      const notes = [];
      if (p.audio_muted) notes.push('mic off');
      if (p.video_muted) notes.push('camera off');
      if (p.state === 'disconnected' || p.state === 'failed') notes.push('connection problem');
      flags.textContent = notes.join(' · ');
      li.append(who, flags);
      return li;
    }),
  );
  $('viewer-count').textContent = `${people.length} in the room` + (watch.viewers ? `, ${watch.viewers} watching` : '');
}

async function sendMuteState() {
  if (!state.session || !state.session.location) return;
  try {
    const r = await fetch(`${state.session.location}/mute`, {
      method: 'PUT',
      headers: state.session.headers({ 'content-type': 'application/json' }),
      body: JSON.stringify({ audio: !state.micOn, video: !state.camOn }),
    });
    if (!r.ok) showError($('call-error'), (await errorFrom(r)).message);
  } catch (_) {
    showError($('call-error'), 'The server cannot be reached.');
  }
}

async function setSending(kind, on) {
  // Muting stops sending (no packets at all), and the server shows a placeholder in the tile.
  const track = state.stream && state.stream.getTracks().find((t) => t.kind === kind);
  const sender = state.pc && state.senders[kind];
  if (sender) await sender.replaceTrack(on ? track || null : null);
  if (kind === 'audio') {
    state.micOn = on;
    $('toggle-mic').textContent = on ? 'Mute microphone' : 'Unmute microphone';
    $('toggle-mic').classList.toggle('off', !on);
  } else {
    state.camOn = on;
    $('toggle-cam').textContent = on ? 'Stop camera' : 'Start camera';
    $('toggle-cam').classList.toggle('off', !on);
  }
  await sendMuteState();
}

function setShareButton(sharing) {
  $('toggle-share').textContent = sharing ? 'Stop sharing' : 'Share screen';
  $('toggle-share').classList.toggle('off', sharing);
}

async function startShare() {
  if (state.share || !state.session) return;
  let stream;
  try {
    // A screen is read, not watched: a modest frame rate keeps text sharp within the bitrate.
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (e) {
    if (e && e.name !== 'NotAllowedError') showError($('call-error'), `The screen could not be shared: ${e.message || e}`);
    return;
  }
  const track = stream.getVideoTracks()[0];
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: state.iceServers });
  pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  const query = `source=screen&owner=${encodeURIComponent(state.selfId)}&name=${encodeURIComponent(state.name)}`;
  const session = new HttpSession(`/rooms/${encodeURIComponent(state.room)}/whip?${query}`, { trickle: state.trickle, token: state.token });
  const share = { pc, session, stream };
  state.share = share;
  setShareButton(true);
  // The browser's own "Stop sharing" ends the track: end the session with it.
  track.addEventListener('ended', () => stopShare(share));
  try {
    await session.start(pc);
  } catch (e) {
    showError($('call-error'), describeJoinError(e));
    await stopShare(share);
  }
}

async function stopShare(share = state.share) {
  if (!share || state.share !== share) return;
  state.share = null;
  setShareButton(false);
  share.stream.getTracks().forEach((t) => t.stop());
  await share.session.stop();
  share.pc.close();
}

async function leave() {
  // When this person left, by the page's clock (tests compare it with the others' pages).
  state.leftAt = Date.now();
  await stopShare();
  const { session, pc, watch } = state;
  state.pc = null;
  state.session = null;
  state.watch = null;
  if (watch) watch.close();
  if (session) await session.stop();
  if (pc) pc.close();
  $('mix').srcObject = null;
  state.joinMs = null;
  state.micOn = state.camOn = true;
  for (const track of state.stream ? state.stream.getTracks() : []) track.enabled = true;
  $('toggle-mic').textContent = 'Mute microphone';
  $('toggle-cam').textContent = 'Stop camera';
  $('toggle-mic').classList.remove('off');
  $('toggle-cam').classList.remove('off');
  $('call-view').hidden = true;
  $('join-view').hidden = false;
  $('join').disabled = !state.stream;
  showError($('call-error'), '');
}

async function init() {
  $('room').value = params.get('room') || '';
  $('name').value = params.get('name') || localStorage.getItem('tessera.name') || '';
  $('room').addEventListener('input', () => {
    $('view-link').href = `/view.html?room=${encodeURIComponent($('room').value.trim())}`;
  });
  $('room').dispatchEvent(new Event('input'));
  $('join-form').addEventListener('submit', join);
  $('camera').addEventListener('change', openDevices);
  $('microphone').addEventListener('change', openDevices);
  $('toggle-mic').addEventListener('click', () => setSending('audio', !state.micOn));
  $('toggle-cam').addEventListener('click', () => setSending('video', !state.camOn));
  $('leave').addEventListener('click', leave);
  $('toggle-share').addEventListener('click', () => (state.share ? stopShare() : startShare()));
  // Sharing needs getDisplayMedia (not on most phones).
  $('toggle-share').hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  // A closing tab leaves the room at once rather than after the ICE timeout.
  addEventListener('pagehide', () => {
    if (state.session) state.session.stop();
  });
  // Browsers hide the camera and microphone (navigator.mediaDevices is undefined) on a page
  // that is not secure: plain http:// on any name but localhost.
  if (!window.isSecureContext) {
    showError($('join-error'), 'The camera and microphone need a secure page: open this address with https:// instead of http:// (or ask whoever runs this server for its https:// link).');
    return;
  }
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    showError($('join-error'), 'This browser cannot make video calls (it has no WebRTC).');
    return;
  }
  if (await tokenMissing(state.token)) {
    showError($('join-error'), TOKEN_NEEDED);
    return;
  }
  openDevices();
}

init();
