// DeskPulse dashboard: the live feed (server-sent events) and fresh numbers, for the overview and the TV.
// Hand-written, no dependencies, no build step. Without it the pages still show everything
// as of the moment they loaded.
//
// - The feed element carries data-stream (the /api/stream URL with the page's filters and the
//   cursor of the newest answer it rendered). EventSource resends the last event id itself when
//   it reconnects; if the browser gives up (readyState CLOSED), we open a new one from the last
//   id seen, with backoff. Rows are de-duplicated by ingest_id whatever the server sends.
// - On an answer (or a "tick" from a desk whose answers are shown only as totals), the numbers
//   are re-fetched from the element with data-parts and swapped in by id, at most every 2 s.
(() => {
  "use strict";
  const feed = document.querySelector("[data-stream]");
  const partsHost = document.querySelector("[data-parts]");
  const live = document.getElementById("live");
  const dataEl = document.getElementById("dash-data");
  const data = dataEl ? JSON.parse(dataEl.textContent) : {};
  const maxRows = data.maxRows || 50;
  const seen = new Set();
  if (feed) feed.querySelectorAll("[data-id]").forEach((el) => seen.add(el.dataset.id));

  // ------------------------------------------------------------------ stream state
  function setLive(state, text) {
    if (!live) return;
    live.className = state;
    live.textContent = text;
  }

  // ------------------------------------------------------------------ times in the site's zone
  // Dates in the page's language (the server says which); times stay 24-hour everywhere.
  const locale = data.lang && data.lang !== "en" ? data.lang : "en-GB";
  const t = (key, fallback) => (data.t || {})[key] || fallback;
  const formats = new Map();
  function localTime(iso, site) {
    const tz = (data.tz || {})[site] || "UTC";
    const when = new Date(iso);
    if (isNaN(when)) return {text: iso, iso};
    let fmt = formats.get(tz);
    if (!fmt) {
      try {
        fmt = new Intl.DateTimeFormat(locale, {timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
      } catch (err) {
        fmt = new Intl.DateTimeFormat(locale, {timeZone: "UTC", hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
      }
      formats.set(tz, fmt);
    }
    return {text: fmt.format(when), iso};
  }

  // ------------------------------------------------------------------ building a row
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;  // never innerHTML: names come from the network
    return node;
  }
  function words(e) {
    const list = (data.words || {})[e.scale] || [];
    return list[e.rating - 1] || `${e.rating}/${e.scale}`;
  }
  function reasonWords(key) {
    const known = (data.reasons || {})[key];
    if (known) return known;
    const text = String(key).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }
  function faceFor(e) {
    const tpl = document.getElementById(`face-${e.scale}-${e.rating}`);
    return tpl ? tpl.content.cloneNode(true) : document.createTextNode("");
  }
  function answerParts(e) {
    const rating = el("span", "rating");
    rating.append(faceFor(e), document.createTextNode(words(e) + " "), el("span", "of", `${e.rating}/${e.scale}`));
    const out = [rating];
    if (e.reasons && e.reasons.length) out.push(el("span", "reasons", e.reasons.map(reasonWords).join(", ")));
    if (e.flags && e.flags.length) {
      const flags = el("span", "flags");
      for (const f of e.flags) flags.append(el("span", "flag", (data.flags || {})[f] || String(f).replace(/_/g, " ")));
      out.push(flags);
    }
    return out;
  }
  function deskName(e) {
    return (data.desks || {})[`${e.site}/${e.device}`] || e.device;
  }
  function siteName(e) {
    return (data.sites || {})[e.site] || e.site;
  }
  // With sites of different zones in the feed, every row says its date and its zone's offset from
  // UTC, as the server writes them ("14:05 UTC−5" over "Sun 29 Nov"), so "newest first" reads in order.
  const dayFormats = new Map();
  function zoned(iso, site) {
    const tz = (data.tz || {})[site] || "UTC";
    const when = new Date(iso);
    let fmt = dayFormats.get(tz);
    if (!fmt) {
      const opts = {weekday: "short", day: "numeric", month: "short", timeZoneName: "shortOffset"};
      try { fmt = new Intl.DateTimeFormat(locale, {...opts, timeZone: tz}); }
      catch (err) { fmt = new Intl.DateTimeFormat(locale, {...opts, timeZone: "UTC"}); }
      dayFormats.set(tz, fmt);
    }
    const parts = Object.fromEntries(fmt.formatToParts(when).map((p) => [p.type, p.value]));
    const zone = (parts.timeZoneName || "GMT").replace("GMT", "UTC").replace("-", "−");
    return {day: `${parts.weekday} ${parts.day} ${parts.month}`, zone};
  }
  function row(e) {
    const t = localTime(e.placed_at || e.ts, e.site);
    const time = el("time", null, t.text);
    time.dateTime = t.iso;
    if (data.zonesDiffer && !isNaN(new Date(t.iso))) {
      const z = zoned(t.iso, e.site);
      time.textContent = t.text + " ";
      time.append(el("span", "zone", z.zone), el("span", "day", z.day));
    }
    const flagged = e.flags && e.flags.length ? " flagged" : "";
    if (feed.tagName === "TBODY") {
      const tr = el("tr", "new" + flagged);
      tr.dataset.id = String(e.ingest_id);
      const tdTime = el("td", "time"); tdTime.append(time);
      const tdDesk = el("td", "desk", deskName(e));
      if (!data.oneSite) tdDesk.append(el("span", "site", siteName(e)));
      const tdAnswer = el("td", "answer"); tdAnswer.append(...answerParts(e));
      tr.append(tdTime, tdDesk, tdAnswer);
      return tr;
    }
    const li = el("li", "new" + flagged);
    li.dataset.id = String(e.ingest_id);
    li.append(...answerParts(e));
    const meta = el("span", "meta");
    meta.append(time);
    if (!data.oneDesk) meta.append(el("span", "desk", deskName(e)));
    li.append(meta);
    return li;
  }

  // ------------------------------------------------------------------ fresh numbers
  // A busy fleet sends answers every second or two, and every open page asks for the numbers:
  // at most one refresh per MIN_GAP_MS per page, the first 0.3 s after a quiet spell.
  const MIN_GAP_MS = 2000;
  let refreshTimer = null;
  let refreshing = false;
  let again = false;
  let lastRefresh = 0;
  let lastSeen = "";  // the feed's cursor after the newest answer (or tick) it brought
  function scheduleRefresh(delay) {
    if (!partsHost) return;
    if (refreshTimer) return;
    const wanted = delay === undefined ? 300 : delay;
    const wait = Math.max(wanted, lastRefresh + MIN_GAP_MS - Date.now());
    refreshTimer = setTimeout(refresh, wait);
  }
  async function refresh() {
    refreshTimer = null;
    if (refreshing) { again = true; return; }
    refreshing = true;
    lastRefresh = Date.now();
    try {
      // seen: the newest answer this page's feed has had; numbers central already computed for
      // this view that include it are shared with this page rather than computed again
      const url = new URL(partsHost.dataset.parts, location.href);
      if (lastSeen) url.searchParams.set("seen", lastSeen);
      const reply = await fetch(url.toString(), {headers: {Accept: "text/html"}, cache: "no-store"});
      if (!reply.ok) return;
      const doc = new DOMParser().parseFromString(await reply.text(), "text/html");
      doc.querySelectorAll("[data-part][id]").forEach((fresh) => {
        const old = document.getElementById(fresh.id);
        if (!old) return;
        // keep what the user opened, and keyboard focus inside the part
        const open = [...old.querySelectorAll("details")].map((d) => d.open);
        fresh.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
        if (old.contains(document.activeElement)) return;  // not under the keyboard: next time
        old.replaceWith(document.importNode(fresh, true));
      });
    } catch (err) {
      // the stream's reconnect will bring another refresh
    } finally {
      refreshing = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }

  // ------------------------------------------------------------------ the filter form
  // Picking a desk picks its site; picking another site clears a desk of a different site.
  const siteSelect = document.getElementById("f-site");
  const deskSelect = document.getElementById("f-device");
  if (siteSelect && deskSelect) {
    deskSelect.addEventListener("change", () => {
      const chosen = deskSelect.selectedOptions[0];
      if (chosen && chosen.dataset.site) siteSelect.value = chosen.dataset.site;
    });
    siteSelect.addEventListener("change", () => {
      const chosen = deskSelect.selectedOptions[0];
      if (chosen && chosen.dataset.site && siteSelect.value && chosen.dataset.site !== siteSelect.value) {
        deskSelect.value = "";
      }
    });
  }

  // ------------------------------------------------------------------ the stream
  if (!feed || !feed.dataset.stream || !window.EventSource) return;
  const empty = document.getElementById("empty");
  const baseUrl = new URL(feed.dataset.stream, location.href);
  let lastId = baseUrl.searchParams.get("after") || "";
  let source = null;
  let backoff = 1000;
  let wasDown = false;

  function onFeedback(msg) {
    if (msg.lastEventId) lastId = lastSeen = msg.lastEventId;
    let e;
    try { e = JSON.parse(msg.data); } catch (err) { return; }
    const key = String(e.ingest_id);
    if (seen.has(key)) return;  // a resend after a reconnect: shown once
    seen.add(key);
    feed.prepend(row(e));
    const rows = feed.querySelectorAll("[data-id]");
    for (let i = maxRows; i < rows.length; i++) rows[i].remove();
    if (empty) empty.hidden = true;
    // The counts come from the server (never counted up here: the store may already hold
    // answers this stream has not delivered yet, and they would be counted twice).
    scheduleRefresh();
  }

  function connect() {
    const url = new URL(baseUrl);
    if (lastId) url.searchParams.set("after", lastId); else url.searchParams.delete("after");
    if (!live || !live.className) setLive("", t("connecting", "connecting…"));
    source = new EventSource(url.toString());
    source.onopen = () => {
      backoff = 1000;
      setLive("on", t("live", "live"));
      if (wasDown) { wasDown = false; scheduleRefresh(0); }  // numbers may have moved while away
    };
    source.onerror = () => {
      wasDown = true;
      if (source.readyState === EventSource.CLOSED) {
        // the browser gave up (an HTTP error, not a dropped connection): try again ourselves
        setLive("off", t("reconnecting", "reconnecting…"));
        source.close();
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 30000);
      } else {
        setLive("off", t("reconnecting", "reconnecting…"));
      }
    };
    source.addEventListener("feedback", onFeedback);
    source.addEventListener("tick", (msg) => {
      if (msg.lastEventId) lastId = lastSeen = msg.lastEventId;
      scheduleRefresh();
    });
  }
  connect();

  // A page left open all day: the numbers roll over at midnight and "last seen" ages.
  setInterval(() => scheduleRefresh(0), (data.refreshS || 60) * 1000);
  // A TV's clock
  const clock = document.getElementById("clock");
  if (clock && data.timezone) {
    const fmt = new Intl.DateTimeFormat(locale, {timeZone: data.timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    const tick = () => { clock.textContent = fmt.format(new Date()); };
    setInterval(tick, 5000);
    tick();
  }
})();
