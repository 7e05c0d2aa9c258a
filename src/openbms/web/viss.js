// A small VISS v2 client over WebSocket (subprotocol VISSv2): get, set, subscribe, with reconnection.
// The dashboard is just one more VISS client: it uses the same messages any other app would.

const TIMEOUT_MS = 10000;

export class VissError extends Error {
  constructor({ number, reason, message }) {
    super(message);
    Object.assign(this, { number, reason });
  }
}

// requestIds must be unique per grant for ever (the server refuses replays, also across restarts),
// so they are random; crypto.randomUUID needs a secure context, getRandomValues does not.
function requestId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class VissClient {
  constructor(url, token, { onStatus = () => {} } = {}) {
    Object.assign(this, { url, token, onStatus });
    this.pending = new Map(); // requestId -> {resolve, reject, timer}
    this.subscriptions = []; // {path, filter, onData, onError, id}
    this.retryMs = 1000;
    this.connect();
  }

  connect() {
    this.ws = new WebSocket(this.url, "VISSv2");
    this.ws.onopen = () => {
      this.retryMs = 1000;
      this.onStatus("live");
      this.subscriptions.forEach((sub) => this.startSubscription(sub));
    };
    this.ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.ws.onclose = () => {
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer);
        reject(new VissError({ number: 503, reason: "disconnected", message: "the connection to the car was lost" }));
      }
      this.pending.clear();
      this.onStatus("offline");
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30000);
    };
  }

  receive(msg) {
    if (msg.action === "subscription") {
      const sub = this.subscriptions.find((s) => s.id === msg.subscriptionId);
      if (!sub) return;
      if (msg.error) sub.onError(new VissError(msg.error));
      else sub.onData([].concat(msg.data));
      return;
    }
    const waiting = this.pending.get(msg.requestId);
    if (!waiting) return;
    this.pending.delete(msg.requestId);
    clearTimeout(waiting.timer);
    if (msg.error) waiting.reject(new VissError(msg.error));
    else waiting.resolve(msg);
  }

  request(body) {
    const id = requestId();
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) {
        reject(new VissError({ number: 503, reason: "disconnected", message: "not connected to the car right now" }));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VissError({ number: 504, reason: "timeout", message: "the car did not answer in time" }));
      }, TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...body, requestId: id, authorization: this.token }));
    });
  }

  // Resolves with what the BMS applied ({value, reason}); it may differ from what was asked.
  async set(path, value) {
    const reply = await this.request({ action: "set", path, value: String(value) });
    return { value: reply.data.dp.value, reason: reply.reason ?? "" };
  }

  // onData receives a list of {path, dp: {value, ts}}; the subscription is renewed after a reconnect.
  subscribe(path, filter, onData, onError) {
    const sub = { path, filter, onData, onError, id: null };
    this.subscriptions.push(sub);
    if (this.ws.readyState === WebSocket.OPEN) this.startSubscription(sub);
  }

  async startSubscription(sub) {
    try {
      sub.id = (await this.request({ action: "subscribe", path: sub.path, filter: sub.filter })).subscriptionId;
    } catch (error) {
      sub.onError(error);
    }
  }
}
