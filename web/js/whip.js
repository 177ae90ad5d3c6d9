// WHIP/WHEP (RFC 9725) client used by both pages: one HTTP session per RTCPeerConnection.
//
// POST the offer at once and trickle candidates afterwards with PATCH
// (application/trickle-ice-sdpfrag, If-Match: the session's ETag), so joining does not wait for
// ICE gathering. `trickle: false` waits for gathering and sends one complete offer instead, for
// servers without trickle and to measure the difference.

/** An error the server answered with: its JSON body's code and sentence. */
export class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Reads the server's `{error, message}` body, or makes a sentence from the status. */
export async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = `The server answered ${response.status} ${response.statusText}.`;
  try {
    const body = await response.json();
    if (body && body.error) code = body.error;
    if (body && body.message) message = body.message;
  } catch (_) {
    // Not JSON: keep the status sentence.
  }
  return new HttpError(response.status, code, message);
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    }, timeoutMs);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

/** The ICE credentials of an SDP, which every trickle fragment must repeat (RFC 8840). */
function iceCredentials(sdp) {
  const ufrag = /^a=ice-ufrag:(.*)$/m.exec(sdp);
  const pwd = /^a=ice-pwd:(.*)$/m.exec(sdp);
  return { ufrag: ufrag && ufrag[1].trim(), pwd: pwd && pwd[1].trim() };
}

/** The first m-line and its mid: with max-bundle, only it carries candidates. */
function firstMedia(sdp) {
  const m = /^m=(\S+)/m.exec(sdp);
  const mid = /^a=mid:(.*)$/m.exec(sdp);
  return { kind: m ? m[1] : 'audio', mid: mid ? mid[1].trim() : '0' };
}

export class HttpSession {
  /**
   * @param {string} endpoint the WHIP or WHEP URL
   * @param {{trickle?: boolean, token?: string}} options `token`: the access token, sent as
   *   `Authorization: Bearer` on every request of the session (RFC 9725 §4.7.1)
   */
  constructor(endpoint, { trickle = true, token = '' } = {}) {
    this.endpoint = new URL(endpoint, window.location.href).toString();
    this.trickle = trickle;
    this.token = token;
    this.location = null;
    this.id = null;
    this.etag = null;
    this.pending = [];
    this.ended = false;
    this.patching = Promise.resolve();
    this.closed = false;
  }

  /** `extra` with the access token's header, if there is a token. */
  headers(extra) {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : extra;
  }

  /** Negotiates `pc` with the server; resolves once the answer is applied. */
  async start(pc) {
    this.pc = pc;
    if (this.trickle) {
      pc.addEventListener('icecandidate', (e) => this.onCandidate(e.candidate));
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (!this.trickle) await waitForGathering(pc, 5000);
    const sdp = this.trickle ? offer.sdp : pc.localDescription.sdp;
    const response = await fetch(this.endpoint, {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/sdp' }),
      body: sdp,
    });
    if (response.status !== 201) throw await errorFrom(response);
    this.location = new URL(response.headers.get('location'), this.endpoint).toString();
    // The session's public id, as the room's state and events name it (the URL's last
    // segment is a secret of its own).
    this.id = response.headers.get('tessera-session-id');
    this.etag = response.headers.get('etag');
    const accepts = (response.headers.get('accept-patch') || '').includes('trickle-ice-sdpfrag');
    if (!accepts) this.trickle = false;
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    this.flush();
  }

  onCandidate(candidate) {
    if (this.closed) return;
    if (candidate && candidate.candidate) {
      if (candidate.sdpMLineIndex && candidate.sdpMLineIndex > 0) return; // bundled away
      this.pending.push(candidate.candidate);
    } else {
      this.ended = true;
    }
    if (this.location) this.flush();
  }

  /** Sends what was gathered since the last PATCH, one request at a time, in order. */
  flush() {
    if (!this.trickle || this.closed || !this.location) return;
    if (this.pending.length === 0 && !this.ended) return;
    const candidates = this.pending.splice(0);
    const end = this.ended;
    this.ended = false;
    const local = this.pc.localDescription.sdp;
    const { ufrag, pwd } = iceCredentials(local);
    const { kind, mid } = firstMedia(local);
    const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `m=${kind} 9 UDP/TLS/RTP/SAVPF 0`, `a=mid:${mid}`];
    for (const c of candidates) lines.push(`a=${c}`);
    if (end) lines.push('a=end-of-candidates');
    const body = lines.join('\r\n') + '\r\n';
    this.patching = this.patching.then(async () => {
      const headers = this.headers({ 'content-type': 'application/trickle-ice-sdpfrag' });
      if (this.etag) headers['if-match'] = this.etag;
      try {
        const r = await fetch(this.location, { method: 'PATCH', headers, body });
        if (r.status !== 204 && r.status !== 200) {
          console.warn('trickle PATCH refused', r.status, (await errorFrom(r)).message);
        }
      } catch (e) {
        console.warn('trickle PATCH failed', e);
      }
    });
  }

  /** Ends the session on the server (best effort; the page may be closing). */
  async stop() {
    if (this.closed) return;
    this.closed = true;
    if (!this.location) return;
    try {
      await fetch(this.location, { method: 'DELETE', keepalive: true, headers: this.headers({}) });
    } catch (_) {
      // The server is gone or unreachable: the session ends with ICE anyway.
    }
  }
}

/**
 * The STUN and TURN servers this page may use (the same the server puts in RFC 9725 §4.6 Link
 * headers), asked before the offer so the browser gathers relay candidates for it. None when
 * the server names none or cannot say.
 */
export async function fetchIceServers(room, token) {
  try {
    const r = await fetch(`/ice-servers?room=${encodeURIComponent(room)}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    if (!r.ok) return [];
    return (await r.json()).iceServers || [];
  } catch (_) {
    return [];
  }
}

/** How long a page waits for its media connection before it says the network is in the way. */
export const CONNECT_DEADLINE_MS = 12000;

/** What a page says when its media connection does not come up. */
export function unreachable(iceServers) {
  const relay = iceServers.some((s) => [].concat(s.urls).some((u) => u.startsWith('turn')));
  return relay
    ? 'No media connection to the server, not even through its relay (TURN): this network '
      + 'blocks it. Try another network, or ask whoever runs the server for a relay over TCP or on port 443.'
    : 'No media connection to the server: this network blocks a direct connection (UDP), and '
      + 'the server offers no relay (TURN) to go around it. Try another network, or ask whoever runs the server to set up TURN.';
}

/** What a page opened without a token says on a server that needs one. */
export const TOKEN_NEEDED = 'This server needs an access token: open the link with ?token=… you were given. '
  + 'Whoever runs the server makes one with `tessera token --room ROOM --identity NAME --grant join`.';

/** Whether this page lacks the token the server needs (asked once, before anything else). */
export async function tokenMissing(token) {
  if (token) return false;
  try {
    const r = await fetch('/healthz');
    return r.ok && (await r.json()).tokens === true;
  } catch (_) {
    return false; // an unreachable server says so when the page tries to join
  }
}

/** A short sentence for a failure to join, for the person in front of the page. */
export function describeJoinError(e) {
  if (e instanceof HttpError) {
    switch (e.code) {
      case 'room_full':
        return 'This room is full. Try again later or pick another room.';
      case 'invalid_room_name':
        return 'That room name is not valid: use letters, digits, "-" and "_" (up to 64).';
      case 'unsupported_codec':
        return `This browser cannot send or receive what the server needs: ${e.message}`;
      case 'shutting_down':
        return 'The server is restarting. Try again in a moment.';
      case 'unauthorized':
        return e.message.includes('expired') ? 'Your access token has expired: ask for a new link.' : TOKEN_NEEDED;
      case 'forbidden':
        return `Your access token does not allow this: ${e.message}`;
      default:
        return `The server refused to connect: ${e.message}`;
    }
  }
  // fetch() rejects with a TypeError when the server cannot be reached at all.
  if (e instanceof TypeError && /fetch|network/i.test(e.message)) {
    return 'The server cannot be reached. Check the network and try again.';
  }
  return `Could not connect: ${e.message || e}`;
}
