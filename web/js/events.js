// The room's event stream (`GET /rooms/{room}/events`, Server-Sent Events) kept as a small model
// of who is in the room. Messages are typed JSON (see the README, "Room events"); the first one,
// and the first after any reconnection, is a `snapshot`, so the model never drifts.

export class RoomWatch {
  /**
   * @param {string} room
   * @param {(watch: RoomWatch, event: object) => void} onChange called after every message
   * @param {(up: boolean) => void} onStream called when the stream opens or drops
   * @param {string} token the access token (EventSource cannot set a header: it goes in the
   *   query as `access_token`)
   */
  constructor(room, onChange, onStream = () => {}, token = '') {
    this.room = room;
    this.participants = new Map(); // id -> SessionInfo, in join order
    this.viewers = 0;
    this.live = false;
    const query = token ? `?access_token=${encodeURIComponent(token)}` : '';
    this.source = new EventSource(`/rooms/${encodeURIComponent(room)}/events${query}`);
    this.source.onopen = () => onStream(true);
    this.source.onerror = () => onStream(false);
    this.source.onmessage = (e) => {
      let event;
      try {
        event = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      this.apply(event);
      onChange(this, event);
    };
  }

  apply(event) {
    switch (event.type) {
      case 'snapshot':
        this.live = event.live;
        this.participants = new Map(event.participants.map((p) => [p.id, p]));
        this.viewers = event.viewers;
        break;
      case 'participant_joined':
      case 'participant_updated':
        this.live = true;
        this.participants.set(event.participant.id, event.participant);
        break;
      case 'participant_left':
        this.participants.delete(event.id);
        break;
      case 'viewers_changed':
        this.viewers = event.viewers;
        break;
      case 'room_ended':
        this.live = false;
        this.participants.clear();
        this.viewers = 0;
        break;
      default:
        break; // layout_changed, connection_problem: nothing to keep
    }
  }

  close() {
    this.source.close();
  }
}
