// A WebSocket that reconnects with exponential backoff (with jitter) and says when it resynced.
// No HTTP polling anywhere: while the socket is quiet, nothing is sent.

// Batch ids remembered: at ~100 broker messages a second, minutes of them, well past the
// broker's 30-s lease after which a lost worker's batches are delivered again.
const SEEN_BATCHES = 20000;

export class LiveSocket {
  constructor(path, { onMessage, onState, onReconnect }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onReconnect = onReconnect;
    this.attempt = 0;
    this.everOpen = false;
    this.closedByUs = false;
    this.seenBatches = new Set();
    this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${this.path}`;
  }

  connect() {
    this.onState(this.everOpen ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      const wasReconnect = this.everOpen;
      this.everOpen = true;
      this.attempt = 0;
      this.onState("live");
      // Anything may have happened while the socket was down: resynchronise.
      if (wasReconnect && this.onReconnect) this.onReconnect();
    };
    ws.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      // A redelivered batch sends its delta again, alone: drop a delta naming a batch seen before.
      if (data.type === "delta" && data.batch_id) {
        const ids = Array.isArray(data.batch_ids) && data.batch_ids.length ? data.batch_ids : [data.batch_id];
        if (ids.some((id) => this.seenBatches.has(id))) return;
        for (const id of ids) this.seenBatches.add(id);
        while (this.seenBatches.size > SEEN_BATCHES) this.seenBatches.delete(this.seenBatches.values().next().value);
      }
      this.onMessage(data);
    };
    ws.onclose = (event) => {
      if (this.closedByUs) return;
      if (event.code === 4404 || event.code === 4403) {
        this.onState("denied");
        return;
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    this.attempt += 1;
    const base = Math.min(30000, 1000 * 2 ** (this.attempt - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    this.onState("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}

// Shows "live" / "reconnecting" and the age of the newest event, refreshed once a second.
export class LiveStatus {
  constructor(element, ageElement, formatAge) {
    this.element = element;
    this.ageElement = ageElement;
    this.formatAge = formatAge;
    this.newest = null;
    this.clockOffset = 0;
    this.timer = setInterval(() => this.renderAge(), 1000);
  }

  setState(state) {
    const labels = {
      connecting: "connecting…",
      live: "live",
      reconnecting: "reconnecting…",
      denied: "live updates unavailable",
    };
    this.element.dataset.state = state;
    this.element.querySelector(".live-label").textContent = labels[state] || state;
  }

  setServerTime(serverMs) {
    this.clockOffset = serverMs - Date.now();
  }

  seen(ts) {
    if (ts && (this.newest === null || ts > this.newest)) this.newest = ts;
    this.renderAge();
  }

  renderAge() {
    if (!this.ageElement) return;
    if (this.newest === null) {
      this.ageElement.textContent = "";
      return;
    }
    const age = Date.now() + this.clockOffset - this.newest;
    this.ageElement.dataset.newest = String(this.newest);
    this.ageElement.textContent = `· newest event ${this.formatAge(age)}`;
  }
}
