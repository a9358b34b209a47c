/*
 * bridge.js: the browser client of pg-notify-bridge's /v1 protocol.
 *
 * No dependencies, no build step. A page asks for channels and says what to
 * refetch when they change; this file keeps that promise across dropped
 * connections, sleeping laptops, restarted daemons and expired tokens:
 *
 *   var bridge = PgBridge.connect(url, {token: "...", channels: ["tasks"],
 *                                       tokenUrl: "/bridge/token"});
 *   bridge.refetchOn("tasks", function () { return fetch("/task-list")... },
 *                    {minInterval: 1000, burst: 3});
 *   bridge.onState(function (state) { ... });   // connecting, live, offline
 *   PgBridge.whenParsed(load);                   // the page's own first load
 *
 * Why each part is here:
 * - Each channel remembers the position of the last frame it saw and resumes
 *   from it (`since`), so a reconnect replays what was missed, or the daemon
 *   says `resync` and the page refetches: never a silent gap.
 * - Callbacks (refetch, events, state) run only once the document is parsed,
 *   so the page's snippet works in <head> as well as at the end of <body>.
 * - The first `subscribed` of a channel refetches once: a change committed
 *   between the page render and the subscription would otherwise be lost.
 *   Channels rendered into the page ({% live %}, {% live_attrs %}) instead
 *   start from the page's render position (`since`): the daemon replays what
 *   the render missed, and a page that missed nothing fetches nothing.
 * - What a (re)connect replays is one refetch, however many events: the
 *   subscribes are followed by a ping, and the daemon answers a socket's
 *   messages in order, so its pong comes after every replay; refetches the
 *   replay asks for wait for it (or for the socket's end) and go out once.
 * - Reconnects wait a random time up to a capped exponential bound ("full
 *   jitter"), so a restarted daemon is not hit by every tab at once.
 * - A dead TCP connection can look open for minutes: an application ping
 *   with a deadline finds it, and so does coming back to the tab or network.
 * - Close code 4001 means the token was refused (expired): ask the page's
 *   token URL for a fresh one, so a tab left open for days keeps working.
 * - A 403 from the token URL means this user gets no token (not logged in):
 *   connect without one, so the daemon's --allow-anonymous channels apply.
 *   Channels it refuses are not asked again, and a 4001 on a socket without
 *   a token (the daemon takes no anonymous clients) leaves the page offline
 *   until the tab becomes visible or the network returns: asking again
 *   sooner would get the same answer.
 * - refetchOn() runs one fetch at a time through a token bucket that holds
 *   polling's budget: it starts with one token (the first load), one comes
 *   back per minInterval, up to `burst` (3) are saved while nothing changes,
 *   and with none left the changes fold into one fetch when the next token
 *   comes. So t ms after it was set up there were at most 1 + t / minInterval
 *   fetches, never more than polling; a plain leading-edge window (burst 1)
 *   made most changes at one per second wait for its end (p50 staleness
 *   ~0.5 s against 8 ms measured with the bucket, bench/RESULTS.md).
 *
 * Live regions ({% live "orders.Order" %}...{% endlive %}): each region's
 * HTML is refetched from its src (default: the page's own URL, the region
 * taken out of the response by id) and morphed in place with idiomorph,
 * keeping focus, scroll and what the user typed; regions sharing a src share
 * one fetch and one token bucket, so they cost what refetchOn() costs. An
 * element with data-bridge-on ({% live_attrs %}) gets a throttled, non-bubbling
 * `bridge:change` event instead (hx-trigger="bridge:change" for htmx), and the
 * document gets one `bridge:change` per event or resync, unthrottled, with
 * {channel, op, pks, position, table, count} (op "RESYNC" with a reason).
 *
 * {% bridge_client %} renders a config and loads this file with data-config;
 * it then connects on its own and the client is PgBridge.client. Pages with
 * live regions load it deferred; either way the client connects once the
 * page is parsed, with the last config in the page (each tag's token covers
 * every channel named before it).
 */
(function (root) {
  "use strict";

  var DEFAULTS = {
    token: null,
    channels: [],
    tokenUrl: null,
    minDelay: 500,        // first reconnect waits up to this (ms)
    maxDelay: 30000,      // the cap of the exponential bound (ms)
    pingInterval: 25000,  // send a ping after this much silence (ms)
    pongTimeout: 10000,   // no frame within this after a ping: the connection is dead
    openTimeout: 10000,   // a handshake that hangs this long is given up
    authTimeout: 10000,   // no `authenticated` within this: reconnect
    labels: {},           // model label -> its channels, from the Django tags
    live: [],             // channels rendered into the page at `since`
    since: null,          // the page's render position
    start: true           // false: connect only when start() is called
  };

  /* A monotonic clock where there is one: a wall clock stepped back would stall the throttle. */
  function now() {
    return root.performance && root.performance.now ? root.performance.now() : Date.now();
  }

  function report(error) {
    if (root.console && root.console.error) root.console.error("bridge.js:", error);
  }

  function parsing() {
    return !!(root.document && root.document.readyState === "loading" &&
              root.document.addEventListener);
  }

  /* Run fn now, or once the document is parsed. A page's callbacks touch its
   * elements (document.body, the list they render into), which do not exist
   * yet while a snippet in <head> runs: every callback goes through here, so
   * the snippet works wherever it is placed. */
  function whenParsed(fn) {
    if (!parsing()) { fn(); return; }
    root.document.addEventListener("DOMContentLoaded", function () { fn(); });
  }

  /* A refetch function that waits for the parsed document, keeping its promise
   * (the throttle waits on it to run one fetch at a time). */
  function afterParse(fn) {
    return function () {
      if (!parsing()) return fn();
      return new Promise(function (resolve, reject) {
        whenParsed(function () {
          try { resolve(fn()); } catch (error) { reject(error); }
        });
      });
    };
  }

  /* A grant-like match: "tasks" covers "tasks" and "tasks:owner_id=7"; "*" covers all. */
  function covers(pattern, channel) {
    if (pattern === "*" || pattern === channel) return true;
    return pattern.indexOf(":") < 0 && channel.indexOf(pattern + ":") === 0;
  }

  function patternsOf(pattern) {
    return Array.isArray(pattern) ? pattern : [pattern];
  }

  function coversAny(patterns, channel) {
    for (var i = 0; i < patterns.length; i++) if (covers(patterns[i], channel)) return true;
    return false;
  }

  function defaultUrl(options) {
    var loc = root.location;
    var secure = options.secure != null ? options.secure : loc.protocol === "https:";
    return (secure ? "wss" : "ws") + "://" + loc.hostname + ":" + (options.port || 8765) + "/v1";
  }

  /* Token bucket with at most one call in flight and one trailing fold; fn may
   * return a promise. It starts with one token; each call spends one, and
   * they come back at one per minInterval up to burst (default 3; 1 is a
   * plain leading-edge window).
   * A trigger while a call runs or no token is left marks one call owed. */
  function throttle(fn, minInterval, burst) {
    burst = burst == null ? 3 : Math.max(1, burst);
    var running = false, pending = false, timer = null, tokens = 1, stamp = now();

    function refill() {
      var t = now();
      tokens = minInterval > 0 ? Math.min(burst, tokens + (t - stamp) / minInterval) : burst;
      stamp = t;
    }
    function start() {
      running = true;
      pending = false;
      refill();
      tokens -= 1;  // a timer a hair early leaves a small debt, kept: the bound holds
      var result;
      try { result = fn(); } catch (error) { report(error); }
      Promise.resolve(result).catch(report).then(done);
    }
    function done() {
      running = false;
      if (pending) schedule();
    }
    function schedule() {
      refill();
      if (tokens >= 1) {
        start();
      } else {
        timer = setTimeout(function () { timer = null; if (pending) start(); },
                           (1 - tokens) * minInterval);
      }
    }
    function trigger() {
      if (running || timer) { pending = true; return; }
      pending = true;
      schedule();
    }
    /* Drop an owed call (the client closed): a fetch already running ends on its own. */
    trigger.cancel = function () {
      clearTimeout(timer);
      timer = null;
      pending = false;
    };
    return trigger;
  }

  function Client(url, options) {
    var opts = {};
    var key;
    for (key in DEFAULTS) opts[key] = DEFAULTS[key];
    for (key in options || {}) if (options[key] !== undefined) opts[key] = options[key];
    opts.labels = {};  // filled by _adopt, never the shared default
    this.url = url || defaultUrl(opts);
    this.options = opts;
    this.token = opts.token;
    this.state = "connecting";
    this.positions = {};      // channel -> last position seen
    this.subscribed = {};     // channel -> true once `subscribed` on this socket
    this.refused = {};        // channel -> true when the daemon said forbidden
    this.wanted = [];
    this._handlers = [];      // {pattern, fn}: events
    this._resync = [];        // fn(channel, frame)
    this._refetch = [];       // {patterns, trigger}
    this._settling = null;    // refetch entries owed by a replay, until its pong
    this._pings = 0;          // pings sent on this socket
    this._pongs = 0;          // pongs received on this socket
    this._settleAt = 0;       // the pong count that ends the replay
    this._stateFns = [];
    this._attempt = 0;
    this._timer = null;
    this._pingTimer = null;
    this._deadline = null;
    this._authTimer = null;
    this._needToken = !this.token && !!opts.tokenUrl;
    this._closed = false;
    this._started = false;
    this._ws = null;
    this.lastChange = null;  // the detail of the newest bridge:change
    this._adopt(options || {});
    this._listen();
    if (opts.start) this.start();
  }

  Client.prototype = {
    /* Connect (once): for a client made with {start: false}. */
    start: function () {
      if (this._started || this._closed) return this;
      this._started = true;
      this._open();
      return this;
    },

    /* Take a later config of the same page: its token covers more channels, its live
     * channels resume from the render position. Only before start(). */
    _adopt: function (config) {
      var self = this;
      if (config.token) this.token = config.token;
      this._needToken = !this.token && !!this.options.tokenUrl;
      (config.channels || []).forEach(this._want, this);
      for (var label in config.labels || {}) this.options.labels[label] = config.labels[label];
      if (config.since != null) {
        (config.live || []).forEach(function (channel) {
          self._want(channel);
          if (self.positions[channel] == null) self.positions[channel] = config.since;
        });
      }
    },

    /* A model label from the tags ("orders.Order") stands for its channels. */
    _patterns: function (pattern) {
      var labels = this.options.labels || {}, result = [];
      patternsOf(pattern).forEach(function (p) {
        result = result.concat(Object.prototype.hasOwnProperty.call(labels, p) ? labels[p] : [p]);
      });
      return result;
    },

    /* Call fn(frame) for every event on a channel that `pattern` covers. */
    on: function (pattern, fn) {
      this._handlers.push({patterns: this._patterns(pattern), fn: fn});
      return this;
    },

    /* Call fn(channel, frame) when the daemon cannot prove a gap-free resume. */
    onResync: function (fn) {
      this._resync.push(fn);
      return this;
    },

    /* Call fn(state) now (once the document is parsed) and on every change of
     * connecting / live / offline. */
    onState: function (fn) {
      var self = this;
      this._stateFns.push(fn);
      whenParsed(function () {
        try { fn(self.state); } catch (error) { report(error); }
      });
      return this;
    },

    /* Refetch with fn when a covered channel changes, resyncs or first subscribes (not for
     * a channel rendered into the page: it resumes from the render position). `pattern`
     * is a channel, a model label named in a tag, or an array of them; options
     * {minInterval: 1000, burst: 3} set the throttle (see throttle()). */
    refetchOn: function (pattern, fn, options) {
      var minInterval = (options && options.minInterval != null) ? options.minInterval : 1000;
      var burst = (options && options.burst != null) ? options.burst : 3;
      var entry = {patterns: this._patterns(pattern),
                   trigger: throttle(afterParse(fn), minInterval, burst)};
      this._refetch.push(entry);
      for (var channel in this.subscribed) {
        if (this.subscribed[channel] && coversAny(entry.patterns, channel)) {
          entry.trigger();
          break;
        }
      }
      return this;
    },

    subscribe: function (channel) {
      if (this._want(channel) && this._ready()) this._subscribe(channel);
      return this;
    },

    unsubscribe: function (channel) {
      this.wanted = this.wanted.filter(function (c) { return c !== channel; });
      delete this.positions[channel];
      delete this.subscribed[channel];
      this._send({type: "unsubscribe", channel: channel});
      return this;
    },

    /* Stop for good: no reconnect. */
    close: function () {
      this._closed = true;
      this._settling = null;  // dropped like any owed refetch
      clearTimeout(this._settleTimer);
      this._clearTimers();
      this._refetch.forEach(function (entry) { entry.trigger.cancel(); });
      if (this._ws) this._detach(this._ws).close(1000);
      this._setState("offline");
    },

    /* Reconnect now (also what visibilitychange and online do while offline). */
    reconnect: function () {
      if (this._closed || !this._started) return;
      if (this._ws) this._drop(this._ws);
      clearTimeout(this._timer);
      this._timer = null;
      this._open();
    },

    _want: function (channel) {
      if (this.wanted.indexOf(channel) >= 0) return false;
      this.wanted.push(channel);
      return true;
    },

    _ready: function () {
      return this._ws && this._ws.readyState === 1 && this._authed;
    },

    _listen: function () {
      var self = this;
      var doc = root.document;
      if (doc && doc.addEventListener) {
        doc.addEventListener("visibilitychange", function () {
          if (doc.visibilityState === "visible") self._wake();
        });
      }
      if (root.addEventListener) {
        root.addEventListener("online", function () { self._wake(); });
      }
    },

    /* The tab came back or the network did: reconnect at once, or check the socket. */
    _wake: function () {
      if (this._closed) return;
      if (this.state === "offline") this.reconnect();
      else if (this.state === "live") this._ping();
    },

    _open: function () {
      var self = this;
      if (this._needToken) {
        this._fetchToken().then(function () { self._connect(); }, function (error) {
          report(error);
          self._retry();
        });
        return;
      }
      this._connect();
    },

    _connect: function () {
      var self = this, ws, hadToken = !!this.token;
      if (this._closed) return;
      if (!this._everLive) this._setState("connecting");  // after a drop: offline until live
      this._authed = false;
      this.subscribed = {};
      this._pings = this._pongs = 0;
      try {
        ws = new root.WebSocket(this.url);
      } catch (error) {
        report(error);
        this._retry();
        return;
      }
      this._ws = ws;
      this._authTimer = setTimeout(function () { self._drop(ws); self._retry(); },
                                   this.options.openTimeout);
      ws.onopen = function () {
        clearTimeout(self._authTimer);
        if (self.token) {
          self._send({type: "auth", token: self.token});
          self._authTimer = setTimeout(function () { self._drop(ws); self._retry(); },
                                       self.options.authTimeout);
        } else {
          self._authed = true;
          self._subscribeAll();
        }
        self._schedulePing();
      };
      ws.onmessage = function (message) { self._receive(message.data); };
      ws.onclose = function (event) { self._onClose(ws, event.code, hadToken); };
      ws.onerror = function () { /* onclose follows and decides */ };
    },

    _subscribeAll: function () {
      this.wanted.forEach(function (channel) {
        if (!this.refused[channel]) this._subscribe(channel);
      }, this);
      // Refetches the replays ask for wait for the pong to this ping (see the header),
      // or pongTimeout at most: a silent socket never holds them back for good.
      var self = this, sent = this._pings;
      this._send({type: "ping"});
      if (this._pings > sent) {
        this._settling = this._settling || [];
        this._settleAt = this._pings;
        clearTimeout(this._settleTimer);
        this._settleTimer = setTimeout(function () { self._settle(); },
                                       this.options.pongTimeout);
      }
      this._checkLive();
    },

    /* The replay is over (its pong came) or the socket is gone: make the owed refetches. */
    _settle: function () {
      var owed = this._settling;
      this._settling = null;
      clearTimeout(this._settleTimer);
      (owed || []).forEach(function (entry) { entry.trigger(); });
    },

    _subscribe: function (channel) {
      var frame = {type: "subscribe", channel: channel};
      if (this.positions[channel] != null) frame.since = this.positions[channel];
      this._send(frame);
    },

    _send: function (frame) {
      if (this._ws && this._ws.readyState === 1) {
        if (frame.type === "ping") this._pings += 1;
        this._ws.send(JSON.stringify(frame));
      }
    },

    _receive: function (data) {
      var frame;
      this._schedulePing();  // any frame proves the connection alive
      try { frame = JSON.parse(data); } catch (error) { return; }
      if (!frame || typeof frame.type !== "string") return;
      switch (frame.type) {
        case "authenticated":
          clearTimeout(this._authTimer);
          this._authed = true;
          this._subscribeAll();
          break;
        case "subscribed": this._onSubscribed(frame); break;
        case "event": this._onEvent(frame); break;
        case "resync": this._onResync(frame); break;
        case "error": this._onError(frame); break;
        case "pong":
          this._pongs += 1;
          if (this._settling && this._pongs >= this._settleAt) this._settle();
          break;
        default: break;  // types a newer daemon may add
      }
    },

    _onSubscribed: function (frame) {
      var channel = frame.channel;
      var first = this.positions[channel] == null;
      this.subscribed[channel] = true;
      if (frame.position != null) this.positions[channel] = frame.position;
      if (first) this._refetchFor(channel);
      this._checkLive();
    },

    _onEvent: function (frame) {
      var channel = frame.channel;
      if (frame.position != null) this.positions[channel] = frame.position;
      this._handlers.forEach(function (h) {
        if (coversAny(h.patterns, channel)) {
          whenParsed(function () {
            try { h.fn(frame); } catch (error) { report(error); }
          });
        }
      });
      this._emit({channel: channel, op: frame.op, pks: frame.pks, position: frame.position,
                  table: frame.table, count: frame.count});
      this._refetchFor(channel);
    },

    _onResync: function (frame) {
      var channel = frame.channel;
      if (frame.position != null) this.positions[channel] = frame.position;
      this._resync.forEach(function (fn) {
        whenParsed(function () {
          try { fn(channel, frame); } catch (error) { report(error); }
        });
      });
      this._emit({channel: channel, op: "RESYNC", pks: null, position: frame.position,
                  reason: frame.reason});
      this._refetchFor(channel);
    },

    /* `bridge:change` on the document, for plain scripts (every event, unthrottled). */
    _emit: function (detail) {
      this.lastChange = detail;
      var doc = root.document;
      if (!doc || !doc.dispatchEvent || typeof root.CustomEvent !== "function") return;
      try {
        doc.dispatchEvent(new root.CustomEvent("bridge:change", {detail: detail}));
      } catch (error) { report(error); }
    },

    _onError: function (frame) {
      // A channel not granted, or not anonymous on a socket without a token: asking
      // again would close with 4003 or count towards the bad-message limit (4029).
      var refused = !!frame.channel && (frame.code === "forbidden" ||
                                        (frame.code === "unauthorized" && !this.token));
      if (frame.code === "unauthorized" && !refused) {
        this._needToken = !!this.options.tokenUrl;
        return;  // the daemon closes with 4001 next
      }
      if (refused) {
        this.refused[frame.channel] = true;
        this._checkLive();
      }
      report(frame.code + ": " + frame.message);
    },

    _refetchFor: function (channel) {
      var owed = this._settling;
      this._refetch.forEach(function (entry) {
        if (!coversAny(entry.patterns, channel)) return;
        if (!owed) entry.trigger();
        else if (owed.indexOf(entry) < 0) owed.push(entry);
      });
    },

    _checkLive: function () {
      var self = this;
      var pending = this.wanted.filter(function (c) {
        return !self.subscribed[c] && !self.refused[c];
      });
      if (this._authed && pending.length === 0) {
        this._attempt = 0;
        this._everLive = true;
        this._setState("live");
      }
    },

    _onClose: function (ws, code, hadToken) {
      if (ws !== this._ws) return;
      this._ws = null;
      this._clearTimers();
      this._settle();  // a replay cut short: what it delivered still owes its refetch
      if (this._closed) return;
      if (code === 4001) {
        this._needToken = !!this.options.tokenUrl;
        if (!hadToken) {  // no anonymous access: wait for _wake, do not loop
          clearTimeout(this._timer);
          this._timer = null;
          this._setState("offline");
          return;
        }
      }
      this._retry();
    },

    /* Forget a socket that may be dead without waiting for its close event. */
    _drop: function (ws) {
      this._detach(ws);
      try { ws.close(); } catch (error) { /* already closing */ }
      if (ws === this._ws) this._ws = null;
      this._clearTimers();
      this._settle();
    },

    _detach: function (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      return ws;
    },

    /* Wait a random delay in [0, min(maxDelay, minDelay * 2^attempt)), then connect. */
    _retry: function () {
      var self = this;
      if (this._closed) return;
      this._setState("offline");
      var bound = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, this._attempt));
      this._attempt += 1;
      clearTimeout(this._timer);
      this._timer = setTimeout(function () { self._timer = null; self._open(); },
                               Math.random() * bound);
    },

    _fetchToken: function () {
      var self = this;
      var url = this.options.tokenUrl;
      var query = this.wanted.map(function (c) {
        return "channel=" + encodeURIComponent(c);
      }).join("&");
      if (query) url += (url.indexOf("?") < 0 ? "?" : "&") + query;
      return root.fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) {
          if (response.status === 403) return {token: null};  // no token for this user
          if (!response.ok) throw new Error("token URL answered " + response.status);
          return response.json();
        })
        .then(function (body) {
          self.token = body.token || null;
          self._needToken = false;
          if (body.channels && body.channels.length) {
            body.channels.forEach(self._want, self);
            self.refused = {};
          }
        });
    },

    _schedulePing: function () {
      var self = this;
      clearTimeout(this._pingTimer);
      clearTimeout(this._deadline);
      this._deadline = null;
      this._pingTimer = setTimeout(function () { self._ping(); }, this.options.pingInterval);
    },

    _ping: function () {
      var self = this, ws = this._ws;
      if (!ws || ws.readyState !== 1 || this._deadline) return;
      this._send({type: "ping"});
      this._deadline = setTimeout(function () {
        self._deadline = null;
        if (ws === self._ws) { self._drop(ws); self._retry(); }
      }, this.options.pongTimeout);
    },

    _clearTimers: function () {
      clearTimeout(this._pingTimer);
      clearTimeout(this._deadline);
      clearTimeout(this._authTimer);
      this._pingTimer = this._deadline = this._authTimer = null;
    },

    _setState: function (state) {
      if (state === this.state && this._stateSeen) return;
      this._stateSeen = true;
      this.state = state;
      var self = this;
      this._stateFns.forEach(function (fn) {
        // The state when it runs: calls deferred until the document is parsed
        // all see the latest one, so the last call leaves the page right.
        whenParsed(function () {
          try { fn(self.state); } catch (error) { report(error); }
        });
      });
    }
  };

  /* ---- live regions ------------------------------------------------------ */

  /* Whether the user changed a form field since it was rendered: the morph keeps it. */
  function edited(node) {
    if (!node || node.nodeType !== 1) return false;
    var tag = node.tagName;
    if (tag === "INPUT") {
      if (node.type === "checkbox" || node.type === "radio") return node.checked !== node.defaultChecked;
      return node.value !== node.defaultValue;
    }
    if (tag === "TEXTAREA") return node.value !== node.defaultValue;
    if (tag === "SELECT") {
      for (var i = 0; i < node.options.length; i++) {
        if (node.options[i].selected !== node.options[i].defaultSelected) return true;
      }
    }
    return false;
  }

  /* Morph a region's children into `html` with idiomorph: nodes are matched and kept
   * (focus, selection, scroll and listeners survive); the focused field keeps its value
   * and so does any field the user edited. Without idiomorph, replace (and say so). */
  function morph(element, html) {
    if (root.Idiomorph && root.Idiomorph.morph) {
      root.Idiomorph.morph(element, html, {
        morphStyle: "innerHTML",
        ignoreActiveValue: true,
        callbacks: {beforeNodeMorphed: function (node) { return !edited(node); }}
      });
    } else {
      report("idiomorph is not loaded: the region is replaced, not morphed");
      element.innerHTML = html;
    }
  }

  function pageUrl() {
    return root.location.href.split("#")[0];
  }

  function channelsOf(element, attribute) {
    return (element.getAttribute(attribute) || "").split(",").filter(function (c) { return c; });
  }

  /* One fetch for every region of a src; each region is found in the response by id
   * (a partial view may answer with the region's content alone). */
  function refreshRegions(group) {
    var url = group.src || pageUrl();
    var ids = group.regions.map(function (r) { return r.id; });
    return root.fetch(url, {credentials: "same-origin", cache: "no-store",
                            headers: {"X-Bridge-Live": ids.join(" "), Accept: "text/html"}})
      .then(function (response) {
        if (!response.ok) throw new Error("live region: " + url + " answered " + response.status);
        return response.text();
      })
      .then(function (text) {
        // A <template> parses a whole page and a bare fragment alike (table rows too, which
        // a document's body would drop), and runs none of its scripts.
        var holder = root.document.createElement("template");
        holder.innerHTML = text;
        group.regions.forEach(function (region) {
          var fresh = holder.content.getElementById(region.id);
          var html = fresh ? fresh.innerHTML : (group.src ? holder.innerHTML : null);
          if (html == null) {
            report("live region #" + region.id + " is not in the page " + url +
                   " returned: give it src=\"...\" or check that the view renders it");
            return;
          }
          morph(region, html);
          region.dispatchEvent(new root.CustomEvent("bridge:morphed", {bubbles: true}));
        });
      });
  }

  /* Wire the page's regions and data-bridge-on elements to the client (before start()). */
  function bindLive(client, options) {
    var doc = root.document, groups = {}, order = [];
    var throttleOptions = {minInterval: options.minInterval, burst: options.burst};
    Array.prototype.forEach.call(doc.querySelectorAll("[data-bridge-live]"), function (region) {
      var src = region.getAttribute("data-bridge-src") || "";
      if (!groups[src]) { groups[src] = {src: src, regions: [], channels: []}; order.push(src); }
      groups[src].regions.push(region);
      groups[src].channels = groups[src].channels.concat(channelsOf(region, "data-bridge-live"));
    });
    order.forEach(function (src) {
      var group = groups[src];
      if (!group.channels.length) return;  // nothing granted: the region stays as rendered
      client.refetchOn(group.channels, function () { return refreshRegions(group); },
                       throttleOptions);
    });
    Array.prototype.forEach.call(doc.querySelectorAll("[data-bridge-on]"), function (element) {
      var channels = channelsOf(element, "data-bridge-on");
      if (!channels.length) return;
      client.refetchOn(channels, function () {
        element.dispatchEvent(new root.CustomEvent("bridge:change", {detail: client.lastChange}));
      }, throttleOptions);
    });
  }

  var PgBridge = {
    Client: Client,
    covers: covers,
    throttle: throttle,
    whenParsed: whenParsed,
    morph: morph,
    client: null,
    /* connect(url, options), or connect(options) with options.url. */
    connect: function (url, options) {
      if (url && typeof url === "object") { options = url; url = options.url; }
      return new Client(url, options);
    }
  };
  root.PgBridge = root.PgBridge || PgBridge;
  if (root.PgBridge !== PgBridge) return;  // loaded twice: the first copy does the work

  /* Start from the tags' configs: the client exists at once (the page's own script may
   * call PgBridge.client.refetchOn), and connects once the page is parsed, with the last
   * config, which covers every channel the page named. */
  var doc = root.document;
  var script = doc && doc.currentScript;
  var configId = script && script.getAttribute("data-config");
  function readConfig(element) {
    var config = JSON.parse(element.textContent);
    config.start = false;
    return config;
  }
  if (configId) {
    var element = doc.getElementById(configId);
    if (element) PgBridge.client = PgBridge.connect(readConfig(element));
  }
  function ready() {
    var configs = doc.querySelectorAll("script#pg-bridge-config, script.pg-bridge-config");
    if (!configs.length) return;
    var last = readConfig(configs[configs.length - 1]);
    if (PgBridge.client) PgBridge.client._adopt(last);
    else PgBridge.client = PgBridge.connect(last);
    bindLive(PgBridge.client, {minInterval: 1000, burst: 3});
    PgBridge.client.start();
  }
  if (doc) {
    if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", ready);
    else ready();
  }
})(typeof window !== "undefined" ? window : this);
