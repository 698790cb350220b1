// secmesh report: draws the page from the JSON blob in #report-data.
// Everything from the logs is written with textContent (never innerHTML), so a subject or
// an object holding markup shows as text.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var S = data.strings;
  var SVG = "http://www.w3.org/2000/svg";
  var PAGE = 25;
  var DECISION = ["allow", "deny", "error"];

  function str(i) { return S[i] || ""; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { for (var k in attrs) { if (k === "class") e.className = attrs[k]; else e.setAttribute(k, attrs[k]); } }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    if (attrs) { for (var k in attrs) e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function ms(us) { return (us / 1000).toFixed(us < 10000 ? 1 : 0) + " ms"; }
  // Times are microseconds after data.time_base_us: "YYYY-MM-DD HH:MM:SS.ffffff" (UTC).
  function when(us) {
    if (us < 0) return "(time unreadable)";
    var t = data.time_base_us + us, ms = Math.floor(t / 1000);
    var iso = new Date(ms).toISOString();
    return iso.slice(0, 10) + " " + iso.slice(11, 23) + String(1000 + (t - ms * 1000)).slice(1);
  }
  // A transaction in the page is [id, start_us, rows_omitted, ...rows of 11 numbers]:
  // code (depth * 16 + kind * 4 + decision), start_us, latency_us, status, then the string
  // indexes of service, verb, object, rule, reason, sub, caller.
  var ROW = 11;
  function txn(a) {
    var rows = [], hops = a[2], denied = false, span = 0;
    for (var i = 3; i + ROW <= a.length; i += ROW) {
      var r = a.slice(i, i + ROW);
      var code = r[0], kind = (code >> 2) & 3, dec = code & 3;
      if (kind === 0) hops++;
      if (dec === 1) denied = true;
      span = Math.max(span, r[1] + r[2]);
      // [depth, start, latency, decision, status, service, verb, object, rule, reason, sub, caller, kind]
      rows.push([code >> 4, r[1], r[2], dec, r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], kind]);
    }
    return { id: a[0], start: a[1], time: when(a[1]), rows: rows, rows_omitted: a[2], hops: hops, denied: denied, span_us: span,
      root: rows.length ? str(rows[0][5]) + " " + (str(rows[0][6]) || "-") + " " + (str(rows[0][7]) || "-") : "" };
  }
  var TXNS = data.txns.map(txn);
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }

  // A paginated table: rows are arrays of cell values (or {text, cls}); filter on text.
  function table(host, headers, rows, opts) {
    opts = opts || {};
    var page = 0, shown = rows;
    var wrap = el("div");
    var pager = el("div", { class: "pager" });
    var t = el("table");
    var thead = el("thead"), tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    thead.appendChild(tr); t.appendChild(thead);
    var tbody = el("tbody"); t.appendChild(tbody);
    wrap.appendChild(pager); wrap.appendChild(t);
    clear(host); host.appendChild(wrap);
    function draw() {
      clear(tbody); clear(pager);
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      if (page >= pages) page = pages - 1;
      var from = page * PAGE;
      shown.slice(from, from + PAGE).forEach(function (r, i) {
        var row = el("tr");
        if (opts.rowClass) row.className = opts.rowClass(r);
        (opts.cells ? opts.cells(r) : r).forEach(function (c) {
          if (c && typeof c === "object") row.appendChild(el("td", { class: c.cls || "" }, c.text));
          else row.appendChild(el("td", null, c));
        });
        if (opts.onClick) {
          row.className += " clickable";
          row.addEventListener("click", function () {
            Array.prototype.forEach.call(tbody.querySelectorAll("tr.sel"), function (x) { x.classList.remove("sel"); });
            row.classList.add("sel");
            opts.onClick(r);
          });
        }
        tbody.appendChild(row);
      });
      var prev = el("button", null, "‹ prev"), next = el("button", null, "next ›");
      prev.disabled = page === 0; next.disabled = page >= pages - 1;
      prev.addEventListener("click", function () { page--; draw(); });
      next.addEventListener("click", function () { page++; draw(); });
      pager.appendChild(el("span", null, shown.length + " rows" + (opts.note ? opts.note : "") + ", page " + (page + 1) + " of " + pages));
      pager.appendChild(prev); pager.appendChild(next);
    }
    draw();
    return {
      filter: function (pred) { shown = pred ? rows.filter(pred) : rows; page = 0; draw(); }
    };
  }
  function debounce(f) { var t; return function () { clearTimeout(t); t = setTimeout(f, 150); }; }

  // ---- summary
  (function () {
    var s = document.getElementById("summary");
    var bad = data.integrity.filter(function (i) { return !i.ok; }).length;
    [
      [data.events + " events", ""],
      [data.nodes.filter(function (n) { return n.kind === "service"; }).length + " services", ""],
      [data.txns_total + " transactions", ""],
      [data.denials_total + " denials", data.denials_total ? "deny" : ""],
      [bad ? bad + " log set(s) failed verification" : data.integrity.length + " log set(s) verified", bad ? "bad" : "ok"]
    ].forEach(function (p) { s.appendChild(el("span", { class: p[1] }, p[0])); });
    if (data.unreadable) s.appendChild(el("span", { class: "bad" }, data.unreadable + " unreadable lines"));
    data.warnings.forEach(function (w) { s.appendChild(el("div", { class: "bad" }, w)); });
  })();

  // ---- service graph: a layered layout (breadth first from the nodes nobody calls)
  (function () {
    var host = document.getElementById("graph");
    var n = data.nodes.length;
    if (!n) { host.appendChild(el("p", { class: "hint" }, "No requests in the logs.")); return; }
    var incoming = data.nodes.map(function () { return 0; });
    var out = data.nodes.map(function () { return []; });
    data.edges.forEach(function (e) { if (e.from !== e.to) { incoming[e.to]++; out[e.from].push(e.to); } });
    // Longest-path layers over the graph without its back edges (a depth-first search from
    // the nodes nobody calls breaks the cycles); iterative, so a large graph cannot overflow.
    var state = data.nodes.map(function () { return 0; }); // 0 new, 1 on the stack, 2 done
    var post = [], back = {};
    function dfs(start) {
      var stack = [[start, 0]];
      state[start] = 1;
      while (stack.length) {
        var top = stack[stack.length - 1], u = top[0];
        if (top[1] < out[u].length) {
          var v = out[u][top[1]++];
          if (state[v] === 1) back[u + ">" + v] = true;
          else if (state[v] === 0) { state[v] = 1; stack.push([v, 0]); }
        } else { state[u] = 2; post.push(u); stack.pop(); }
      }
    }
    for (var i = 0; i < n; i++) if (incoming[i] === 0 && state[i] === 0) dfs(i);
    for (i = 0; i < n; i++) if (state[i] === 0) dfs(i);
    var layer = data.nodes.map(function () { return 0; });
    for (var k = post.length - 1; k >= 0; k--) {
      var u = post[k];
      out[u].forEach(function (v) { if (!back[u + ">" + v] && layer[v] < layer[u] + 1) layer[v] = layer[u] + 1; });
    }
    var layers = [];
    layer.forEach(function (l, i) { (layers[l] = layers[l] || []).push(i); });
    var W = 210, H = 50, GX = 110, GY = 40;
    var pos = [];
    var tall = Math.max.apply(null, layers.map(function (l) { return l.length; }));
    layers.forEach(function (ids, l) {
      var offset = (tall - ids.length) * (H + GY) / 2;
      ids.forEach(function (id, k) { pos[id] = { x: 20 + l * (W + GX), y: 20 + offset + k * (H + GY) }; });
    });
    var width = 40 + layers.length * (W + GX) - GX, height = 40 + tall * (H + GY) - GY;
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img" });
    root.appendChild(svg("title", null, "service graph"));
    var defs = svg("defs");
    ["n", "d"].forEach(function (k) {
      var m = svg("marker", { id: "arrow-" + k, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
      m.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: k === "d" ? "#c62828" : "#8a9bb0" }));
      defs.appendChild(m);
    });
    root.appendChild(defs);
    var pairs = {};
    data.edges.forEach(function (e) { pairs[e.from + ">" + e.to] = true; });
    data.edges.forEach(function (e) {
      var a = pos[e.from], b = pos[e.to], d, lx, ly;
      var denied = e.counts.deny > 0;
      var g = svg("g", { class: "edge" + (denied ? " denied" : ""), "data-from": data.nodes[e.from].name, "data-to": data.nodes[e.to].name });
      if (e.from === e.to) {
        d = "M" + (a.x + W - 30) + "," + a.y + " C" + (a.x + W + 20) + "," + (a.y - 40) + " " + (a.x + W + 30) + "," + (a.y + 10) + " " + (a.x + W) + "," + (a.y + 15);
        lx = a.x + W + 10; ly = a.y - 18;
      } else {
        var back = b.x <= a.x;
        var x1 = back ? a.x : a.x + W, x2 = back ? b.x + W : b.x;
        var y1 = a.y + H / 2 + (pairs[e.to + ">" + e.from] ? (back ? 8 : -8) : 0), y2 = b.y + H / 2 + (pairs[e.to + ">" + e.from] ? (back ? 8 : -8) : 0);
        var bend = back ? 60 : 0;
        var mx = (x1 + x2) / 2, my = (y1 + y2) / 2 + (back ? bend : 0);
        d = "M" + x1 + "," + y1 + " Q" + mx + "," + (my + (back ? bend : 0)) + " " + x2 + "," + y2;
        // Forward labels near the callee, so that a long edge's label clears the nodes it passes.
        lx = back ? mx - 30 : x1 + 0.75 * (x2 - x1) - 24; ly = back ? my + bend / 2 + 10 : y1 + 0.75 * (y2 - y1) - 6;
      }
      g.appendChild(svg("path", { d: d, "marker-end": "url(#arrow-" + (denied ? "d" : "n") + ")" }));
      var label = svg("text", { x: lx, y: ly });
      label.appendChild(svg("tspan", { class: "a" }, "✓" + e.counts.allow));
      if (e.counts.deny) label.appendChild(svg("tspan", { class: "d" }, " ✗" + e.counts.deny));
      if (e.counts.error) label.appendChild(svg("tspan", { class: "d" }, " !" + e.counts.error));
      g.appendChild(label);
      g.appendChild(svg("title", null, data.nodes[e.from].name + " → " + data.nodes[e.to].name + ": " + e.counts.allow + " allowed, " + e.counts.deny + " denied, " + e.counts.error + " failed"));
      root.appendChild(g);
    });
    data.nodes.forEach(function (node, i) {
      var p = pos[i];
      var g = svg("g", { class: "node " + node.kind + (node.handled.deny ? " has-deny" : ""), "data-name": node.name, transform: "translate(" + p.x + "," + p.y + ")" });
      g.appendChild(svg("rect", { width: W, height: H, rx: 6 }));
      var name = node.name.length > 30 ? node.name.slice(0, 29) + "…" : node.name;
      g.appendChild(svg("text", { x: 8, y: 18, "font-weight": "bold" }, name));
      var id = node.id ? (node.id.length > 38 ? node.id.slice(0, 37) + "…" : node.id) : (node.kind === "service" ? "(no SPIFFE ID seen)" : "");
      g.appendChild(svg("text", { x: 8, y: 32, class: "id" }, id));
      if (node.kind === "service") {
        g.appendChild(svg("text", { x: 8, y: 45, class: "id" }, node.handled.allow + " allowed, " + node.handled.deny + " denied" + (node.handled.error ? ", " + node.handled.error + " failed" : "")));
      }
      g.appendChild(svg("title", null, node.name + (node.id ? " (" + node.id + ")" : "")));
      root.appendChild(g);
    });
    host.appendChild(root);
  })();

  // ---- transactions and the waterfall
  (function () {
    var list = document.getElementById("txn-list");
    var wf = document.getElementById("waterfall");
    var note = TXNS.length < data.txns_total ? " (the " + TXNS.length + " most recent of " + data.txns_total + ")" : "";
    if (data.trace_events_capped) note += " (some events were not kept for trees)";
    function show(t) {
      clear(wf);
      wf.appendChild(el("h3", null, "transaction " + t.id));
      wf.appendChild(el("p", { class: "hint" }, t.time + ", " + t.hops + " request(s), " + ms(t.span_us)));
      var span = Math.max(1, t.span_us);
      t.rows.forEach(function (r) {
        var dec = DECISION[r[3]] || "error";
        var row = el("div", { class: "hop " + dec + (r[12] ? " missing" : "") });
        var label = el("div", { class: "label mono" });
        label.style.paddingLeft = (r[0] * 16) + "px";
        var what = (r[12] === 1 ? "→ " : r[12] === 2 ? "? " : "") + str(r[5]) + " " + (str(r[6]) || "-") + " " + (str(r[7]) || "-");
        label.appendChild(el("span", { class: dec }, dec + " "));
        label.appendChild(el("span", { class: "what" }, what));
        label.title = what;
        var track = el("div", { class: "track" });
        var bar = el("div", { class: "bar" });
        bar.style.left = (100 * r[1] / span).toFixed(2) + "%";
        bar.style.width = (100 * r[2] / span).toFixed(2) + "%";
        track.appendChild(bar);
        row.appendChild(label); row.appendChild(track);
        row.appendChild(el("div", { class: "ms" }, ms(r[2])));
        wf.appendChild(row);
        var detail = [];
        if (r[12] === 1) detail.push("no record from the callee");
        if (r[12] === 2) detail.push("the caller's record is missing");
        if (str(r[8])) detail.push("rule " + str(r[8]));
        if (str(r[9])) detail.push(str(r[9]));
        if (r[4]) detail.push("status " + r[4]);
        if (str(r[10])) detail.push("sub " + str(r[10]));
        if (str(r[11])) detail.push("caller " + str(r[11]));
        var d = el("div", { class: "hop-detail" }, detail.join(" · "));
        d.style.paddingLeft = (r[0] * 16) + "px";
        wf.appendChild(d);
      });
      if (t.rows_omitted) wf.appendChild(el("p", { class: "warn" }, t.rows_omitted + " more rows not shown"));
    }
    var tbl = table(list, ["time", "transaction", "first request", "hops", "ms"], TXNS, {
      note: note,
      rowClass: function (t) { return t.denied ? "deny" : ""; },
      cells: function (t) {
        return [t.time.slice(11, 23), { text: t.id.slice(0, 12) + "…", cls: "mono" }, t.root, t.hops, (t.span_us / 1000).toFixed(1)];
      },
      onClick: show
    });
    var f = document.getElementById("txn-filter"), deniedOnly = document.getElementById("txn-denied");
    function apply() {
      var q = f.value.toLowerCase();
      tbl.filter(q || deniedOnly.checked ? function (t) {
        if (deniedOnly.checked && !t.denied) return false;
        if (!q) return true;
        if (t.id.indexOf(q) >= 0 || t.root.toLowerCase().indexOf(q) >= 0) return true;
        return t.rows.some(function (r) { return [5, 6, 7, 8, 10, 11].some(function (k) { return str(r[k]).toLowerCase().indexOf(q) >= 0; }); });
      } : null);
    }
    f.addEventListener("input", debounce(apply));
    deniedOnly.addEventListener("change", apply);
  })();

  // ---- denials
  (function () {
    var host = document.getElementById("denials");
    var note = data.denials.length < data.denials_total ? " (the " + data.denials.length + " most recent of " + data.denials_total + ")" : "";
    var tbl = table(host, ["time", "service", "subject", "caller", "verb", "object", "reason", "rule"], data.denials, {
      note: note,
      cells: function (d) { return [{ text: when(d[0]), cls: "nowrap" }, str(d[1]), str(d[2]), str(d[3]), str(d[4]), str(d[5]), { text: str(d[6]), cls: "deny" }, str(d[7])]; }
    });
    var f = document.getElementById("denial-filter");
    f.addEventListener("input", debounce(function () {
      var q = f.value.toLowerCase();
      tbl.filter(q ? function (d) {
        for (var k = 1; k < 8; k++) if (str(d[k]).toLowerCase().indexOf(q) >= 0) return true;
        return (d[8] || "").indexOf(q) >= 0;
      } : null);
    }));
  })();

  // ---- access matrix: per policy file, a grid (who x what: the verbs each rule allows or
  // denies there) and the rules as a list
  var GRID_ROWS = 40, GRID_COLS = 30;
  function grid(p) {
    var rows = [], cols = [], rowIndex = {}, colIndex = {}, cells = {};
    p.rules.forEach(function (r) {
      (r.callers || ["any caller"]).forEach(function (c) {
        r.subjects.forEach(function (s) {
          var rk = c + "\u0000" + s;
          if (!(rk in rowIndex)) { rowIndex[rk] = rows.length; rows.push({ caller: c, subject: s }); }
          r.objects.forEach(function (o) {
            if (!(o in colIndex)) { colIndex[o] = cols.length; cols.push(o); }
            var key = rowIndex[rk] + ":" + colIndex[o];
            (cells[key] = cells[key] || []).push(r);
          });
        });
      });
    });
    var wrap = el("div", { class: "grid-wrap" });
    var t = el("table", { class: "grid", "data-policy": p.file });
    var head = el("tr");
    head.appendChild(el("th", null, "caller"));
    head.appendChild(el("th", null, "subject"));
    cols.slice(0, GRID_COLS).forEach(function (o) { head.appendChild(el("th", { class: "mono", "data-object": o }, o)); });
    var thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
    var tbody = el("tbody");
    rows.slice(0, GRID_ROWS).forEach(function (row, ri) {
      var tr = el("tr");
      tr.appendChild(el("th", { class: "mono" }, row.caller));
      tr.appendChild(el("th", { class: "mono" }, row.subject));
      cols.slice(0, GRID_COLS).forEach(function (o, ci) {
        var td = el("td", { "data-caller": row.caller, "data-subject": row.subject, "data-object": o });
        (cells[ri + ":" + ci] || []).forEach(function (r) {
          var dry = r.mode !== "enforce";
          var entry = el("div", { class: "cell-rule " + (r.effect === "deny" ? "deny" : "allow") + (r.dead ? " dead" : "") + (dry ? " dry" : ""), "data-rule": r.id });
          entry.appendChild(el("span", { class: "verbs" }, (r.effect === "deny" ? "✗ " : "✓ ") + r.verbs.join(", ")));
          entry.appendChild(el("span", { class: "rule mono" }, r.id + (dry ? " (" + r.mode + ")" : "")));
          entry.title = r.id + ": " + r.effect + " " + r.verbs.join(", ") + (dry ? " (" + r.mode + ", does not decide)" : "") +
            (r.max_class ? ", tokens up to class " + r.max_class : "") + (r.findings.length ? "; " + r.findings.join("; ") : "");
          td.appendChild(entry);
        });
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    t.appendChild(tbody);
    wrap.appendChild(t);
    var left = [];
    if (rows.length > GRID_ROWS) left.push((rows.length - GRID_ROWS) + " caller/subject rows");
    if (cols.length > GRID_COLS) left.push((cols.length - GRID_COLS) + " object columns");
    if (left.length) wrap.appendChild(el("p", { class: "warn grid-left-out" }, left.join(" and ") + " not shown in the grid (the list below has every rule)"));
    return wrap;
  }
  (function () {
    var host = document.getElementById("matrix");
    if (!data.policies.length) { host.appendChild(el("p", { class: "hint" }, "No policy file given (--policy FILE).")); return; }
    data.policies.forEach(function (p) {
      host.appendChild(el("h3", { class: "mono" }, p.file));
      host.appendChild(grid(p));
      var rows = p.rules.slice().sort(function (a, b) {
        var ca = a.callers ? a.callers.join(",") : "", cb = b.callers ? b.callers.join(",") : "";
        return ca < cb ? -1 : ca > cb ? 1 : 0;
      });
      var details = el("details", { class: "rule-list" });
      details.appendChild(el("summary", null, "the " + p.rules.length + " rules as a list"));
      var div = el("div");
      details.appendChild(div);
      host.appendChild(details);
      table(div, ["callers", "subjects", "may", "objects", "effect", "rule", "max class", "lint"], rows, {
        rowClass: function (r) { return r.dead ? "dead" : ""; },
        cells: function (r) {
          return [
            r.callers ? r.callers.join(", ") : "any caller",
            r.subjects.join(", "),
            r.verbs.join(", "),
            { text: r.objects.join(", "), cls: "mono" },
            { text: r.effect + (r.mode !== "enforce" ? " (" + r.mode + ")" : ""), cls: r.effect === "deny" ? "deny" : "allow" },
            { text: r.id, cls: "mono" },
            r.max_class || "",
            { text: r.findings.join("; "), cls: "finding" }
          ];
        }
      });
    });
  })();

  // ---- integrity
  (function () {
    var host = document.getElementById("integrity");
    var key = data.key_source ? "checked against the trusted key from " + data.key_source : "no trusted key given (--key): each log's records were checked against the key they name, which anyone who can rewrite the files can replace";
    host.appendChild(el("p", { class: data.key_source ? "hint" : "warn" }, key));
    table(host, ["service", "result", "events", "signed records", "closed", "key", "files"], data.integrity, {
      cells: function (i) {
        return [
          i.service || "(unreadable)",
          i.ok ? { text: "chain ok" + (i.key_checked ? "" : " (key not trusted)"), cls: "ok" } : { text: i.failure, cls: "bad" },
          i.ok ? i.events : "",
          i.ok ? i.checkpoints : "",
          i.ok ? (i.closed ? "yes" : "no") : "",
          { text: i.key, cls: "mono" },
          { text: i.files.join(" "), cls: "mono" }
        ];
      }
    });
  })();

  document.getElementById("report-status").textContent = "ready";
})();
