// chime-ha status page: polls status.json and journal.json and redraws.
// Every value from the daemon goes through textContent, never innerHTML.
"use strict";

const REFRESH_MS = 2000;
const STRIP_WINDOW_S = 3600;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function when(epoch) {
  if (epoch === null || epoch === undefined) return "never";
  const d = new Date(epoch * 1000);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function shownState(inst) {
  return inst.split_brain && inst.split_brain.active ? "SPLIT_BRAIN" : inst.state;
}

function badge(state, instance) {
  return el("span", {"class": `badge state-${state}`, "data-instance": instance, "data-state": state},
    state.replace("_", " "));
}

function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }

function instanceCard(inst) {
  const sb = inst.split_brain;
  const rows = [
    ["priority", `${inst.effective_priority} (base ${inst.base_priority})`],
    ["master", inst.master_address || "unknown"],
    ["VIPs", (inst.vips.join(", ") || "none") + (inst.vips_owned ? "  (held here)" : "")],
    ["adverts", `sent ${inst.adverts_sent}, received ${inst.adverts_received}`],
    ["dropped", sum(inst.drops_by_reason) ?
      Object.entries(inst.drops_by_reason).map(([r, n]) => `${r} ${n}`).join(", ") : "0"],
    ["last change", inst.last_transition ?
      `${inst.last_transition.from} \u2192 ${inst.last_transition.to} at ${when(inst.last_transition.at)}: ${inst.last_transition.reason}` : "none"],
    ["last failover", inst.failovers.last_seconds === null ? "none measured" :
      `${inst.failovers.last_seconds.toFixed(3)} s (${inst.failovers.count} measured)`],
  ];
  if (sb.active) rows.unshift(["split brain", `with ${sb.peer || "?"} since ${when(sb.since)}`]);
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  return el("div", {"class": "card", "data-instance": inst.name},
    el("h3", {}, badge(shownState(inst), inst.name), inst.name,
      el("span", {"class": "muted"}, `VRID ${inst.vrid} on ${inst.interface || "?"}`)),
    dl);
}

function renderStrips(instances, entries, now) {
  // One bar per instance: the states it went through over the last hour.
  const box = document.getElementById("strips");
  box.replaceChildren();
  const start = now - STRIP_WINDOW_S;
  for (const inst of Object.values(instances)) {
    const bar = el("div", {"class": "bar", "title": "last hour, oldest on the left"});
    const mine = entries.filter(e => e.instance === inst.name && e.kind === "transition");
    let state = mine.length ? mine[0].from : inst.state;
    let t = start;
    const segs = [];
    for (const e of mine) {
      if (e.at > t) segs.push([t, e.at, state]);
      state = e.to; t = Math.max(t, e.at);
    }
    segs.push([t, now, inst.state]);
    for (const [a, b, s] of segs) {
      if (b <= start) continue;
      const left = 100 * (Math.max(a, start) - start) / STRIP_WINDOW_S;
      const width = 100 * (b - Math.max(a, start)) / STRIP_WINDOW_S;
      bar.append(el("div", {"class": `seg state-${s}`, "style": `left:${left}%;width:${width}%`, "title": s}));
    }
    box.append(el("div", {"class": "strip"}, el("span", {"class": "label"}, inst.name), bar));
  }
}

function renderTimeline(entries) {
  const ol = document.getElementById("timeline");
  ol.replaceChildren();
  for (const e of entries.slice().reverse().slice(0, 50)) {
    let chip;
    if (e.kind === "split_brain") chip = el("span", {"class": "chip state-SPLIT_BRAIN"}, `SPLIT BRAIN with ${e.peer || "?"}`);
    else if (e.kind === "split_brain_resolved") chip = el("span", {"class": "chip state-INIT"}, "split brain resolved");
    else if (e.kind === "reload") chip = el("span", {"class": "chip state-INIT"}, "reload");
    else chip = el("span", {"class": `chip state-${e.to}`}, `${e.from} \u2192 ${e.to}`);
    ol.append(el("li", {"data-seq": e.seq}, el("span", {"class": "when"}, when(e.at)),
      el("strong", {}, e.instance), " ", chip, " ", e.reason || ""));
  }
  if (!entries.length) ol.append(el("li", {"class": "muted"}, "no transitions yet"));
}

function renderScripts(scripts) {
  const tbody = document.querySelector("#scripts tbody");
  tbody.replaceChildren();
  for (const s of Object.values(scripts)) {
    const cls = s.result === "ok" ? "ok" : s.result === "failed" ? "bad" : "unknown";
    tbody.append(el("tr", {"data-script": s.name},
      el("td", {}, s.name), el("td", {}, el("span", {"class": `dot ${cls}`}), s.result),
      el("td", {}, s.last_exit === null ? "-" : s.last_exit), el("td", {}, when(s.last_run_at)), el("td", {}, s.detail)));
  }
  if (!Object.keys(scripts).length) tbody.append(el("tr", {}, el("td", {"colspan": "5", "class": "muted"}, "none configured")));
}

function renderVirtualServers(vss) {
  const box = document.getElementById("vservers");
  box.replaceChildren();
  for (const vs of vss) {
    const table = el("table", {"data-vs": vs.name},
      el("caption", {}, `${vs.name}  ${vs.lb_algo}/${vs.lb_kind}  data plane: ${vs.dataplane || "none"}` +
        (vs.active ? "  (active here)" : "  (not active here)")),
      el("tr", {}, el("th", {}, "real server"), el("th", {}, "health"), el("th", {}, "weight"),
        el("th", {}, "connections"), el("th", {}, "detail")));
    for (const rs of vs.real_servers) {
      table.append(el("tr", {"data-rs": `${rs.address}:${rs.port}`},
        el("td", {}, rs.port === null ? rs.address : `${rs.address}:${rs.port}`),
        el("td", {}, el("span", {"class": `dot ${rs.healthy ? "ok" : "bad"}`}), rs.healthy ? "up" : "down"),
        el("td", {}, rs.weight), el("td", {}, rs.stats.connections), el("td", {}, rs.detail)));
    }
    box.append(table);
  }
  if (!vss.length) box.append(el("p", {"class": "muted"}, "none configured"));
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const [status, journal] = await Promise.all([
      fetch("status.json", {cache: "no-store"}).then(r => r.json()),
      fetch("journal.json?limit=500", {cache: "no-store"}).then(r => r.json()),
    ]);
    const now = status.taken_at || Date.now() / 1000;
    document.getElementById("node").textContent = status.node.router_id || status.node.hostname || "";
    const cards = document.getElementById("instances");
    cards.replaceChildren(...Object.values(status.instances).map(instanceCard));
    if (!Object.keys(status.instances).length) cards.append(el("p", {"class": "muted"}, "no VRRP instances"));
    renderStrips(status.instances, journal.entries, now);
    renderTimeline(journal.entries);
    renderScripts(status.scripts);
    renderVirtualServers(status.virtual_servers);
    document.getElementById("updated").textContent = `updated ${when(now)}`;
    document.body.dataset.loaded = "1";
    err.hidden = true;
  } catch (e) {
    err.textContent = `cannot reach the daemon: ${e}`;
    err.hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
