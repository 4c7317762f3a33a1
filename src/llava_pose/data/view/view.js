/* llava-pose view: draws the shards `llava-pose view` writes (see llava_pose/view/__init__.py).

   Data reaches the DOM only as text nodes and attribute values, never as markup: model output
   may contain HTML. Every shard is a script calling LPV.put(name, data), so the page works the
   same from a server and from file://. */
(function () {
  "use strict";

  const DATA = "data/";
  const SVG = "http://www.w3.org/2000/svg";
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const VERDICTS = ["contradicted", "supported", "unverifiable"];
  const BADGES = new Set([
    "task", "filter", "category", "family", "score", "right", "wrong", "missing",
    "contradicted", "supported", "unverifiable", "answer",
  ]);

  // -- the shard loader ------------------------------------------------------------------------

  const store = new Map(); // name -> {promise, resolve, reject, requested, data}

  function entry(name) {
    let e = store.get(name);
    if (!e) {
      e = {};
      e.promise = new Promise((resolve, reject) => {
        e.resolve = resolve;
        e.reject = reject;
      });
      store.set(name, e);
    }
    return e;
  }

  const LPV = (window.LPV = {
    put(name, data) {
      const e = entry(String(name));
      e.data = true;
      e.resolve(data);
    },
    timing: {},
    bucketOf: (key, buckets) => bucketOf(key, buckets),
  });

  /* Load shard `name` once (kept until `drop(name)`). */
  function load(name) {
    const e = entry(name);
    if (!e.requested) {
      e.requested = true;
      const s = document.createElement("script");
      s.src = DATA + name + ".js";
      s.async = true;
      s.onload = () => {
        s.remove();
        if (!e.data) e.reject(new Error(DATA + name + ".js holds no data"));
      };
      s.onerror = () => {
        s.remove();
        store.delete(name);
        e.reject(new Error("cannot load " + DATA + name + ".js"));
      };
      document.head.appendChild(s);
    }
    return e.promise;
  }

  /* Forget a shard once read (the search text: all of it would not fit in memory). */
  function drop(name) {
    const e = store.get(name);
    if (e && e.data) store.delete(name);
  }

  /* The detail shard of an image page: FNV-1a of the key's UTF-8 bytes (as site.bucket_of). */
  function bucketOf(key, buckets) {
    let h = 0x811c9dc5;
    for (const b of new TextEncoder().encode(key)) {
      h = Math.imul(h ^ b, 0x01000193) >>> 0;
    }
    return h % buckets;
  }

  // -- DOM helpers: text only ------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function badge(kind, text) {
    return el("span", { class: "badge b-" + (BADGES.has(kind) ? kind : "other") }, text);
  }

  const fmt = (n) => Number(n).toLocaleString("en-US");
  const $ = (id) => document.getElementById(id);

  // -- state -----------------------------------------------------------------------------------

  const S = {
    m: null, // the manifest
    cols: null, // facet codes and sort keys, loaded on the first filter or sort
    filters: {}, // facet name -> Set of selected value indices
    query: "",
    sort: "",
    page: 0,
    list: null, // null: every row in file order; else the matching row indices
    done: true, // false while a search is still scanning
    scanned: 0,
    token: 0, // bumped by every new filter/search: stale work stops
    shown: [], // [{index, row}] of the current page
    sel: -1, // selected position on the current page
    open: null, // {key, item} of the page in the detail pane
    ready: { list: false, detail: false },
  };

  function anyFilter() {
    return Object.values(S.filters).some((set) => set.size > 0);
  }

  function total() {
    return S.list === null ? S.m.rows : S.list.length;
  }

  // -- facets, sorting and search ----------------------------------------------------------------

  async function columns() {
    if (S.cols) return S.cols;
    const c = await load("columns");
    const n = S.m.rows;
    const w = c.width;
    const value = new Int16Array(128);
    for (let i = 0; i < ALPHABET.length; i++) value[ALPHABET.charCodeAt(i)] = i;
    const codes = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let k = 0; k < w; k++) v = v * 64 + value[c.codes.charCodeAt(i * w + k)];
      codes[i] = v;
    }
    S.cols = { codes, combos: c.combos, sort: c.sort };
    return S.cols;
  }

  /* A test of row index -> passes the selected facets, or null when none is selected. */
  function facetTest(cols) {
    const groups = [];
    S.m.facets.forEach((f, g) => {
      const set = S.filters[f.name];
      if (!set || !set.size) return;
      let mask = 0;
      for (const i of set) mask |= 1 << i;
      groups.push([g, mask]);
    });
    if (!groups.length) return null;
    const ok = cols.combos.map((masks) => groups.every(([g, mask]) => (masks[g] & mask) !== 0));
    return (i) => ok[cols.codes[i]];
  }

  function sortList(list, cols) {
    if (!S.sort) return list;
    const keys = cols.sort[S.sort];
    return list.sort((a, b) => {
      const x = keys[a];
      const y = keys[b];
      if (x === null && y === null) return a - b;
      if (x === null) return 1;
      if (y === null) return -1;
      return y - x || a - b;
    });
  }

  async function recompute() {
    const token = ++S.token;
    S.page = 0;
    S.sel = 0;
    const cols = anyFilter() || S.sort ? await columns() : null;
    if (token !== S.token) return;
    const pass = cols ? facetTest(cols) : null;
    const terms = S.query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) {
      S.done = true;
      if (!cols) {
        S.list = null;
      } else {
        const out = [];
        for (let i = 0; i < S.m.rows; i++) if (!pass || pass(i)) out.push(i);
        S.list = sortList(out, cols);
      }
      return renderList();
    }
    S.list = [];
    S.done = false;
    S.scanned = 0;
    renderList();
    const per = S.m.textPerShard;
    const shards = Math.ceil(S.m.rows / per);
    const ahead = 3;
    for (let k = 0; k < Math.min(ahead, shards); k++) load("text/" + k);
    let filled = false;
    for (let k = 0; k < shards; k++) {
      let texts;
      try {
        texts = await load("text/" + k);
      } catch (err) {
        if (token === S.token) fail(err);
        return;
      }
      drop("text/" + k);
      if (token !== S.token) return;
      if (k + ahead < shards) load("text/" + (k + ahead));
      const base = k * per;
      for (let j = 0; j < texts.length; j++) {
        const t = texts[j];
        if (terms.every((w) => t.includes(w)) && (!pass || pass(base + j))) S.list.push(base + j);
      }
      S.scanned = base + texts.length;
      const need = (S.page + 1) * S.m.pageSize;
      if (!S.sort && !filled && S.list.length >= need) {
        filled = true;
        renderList();
      } else {
        status();
      }
    }
    if (cols && S.sort) sortList(S.list, cols);
    S.done = true;
    renderList();
  }

  // -- the list ----------------------------------------------------------------------------------

  function status() {
    const n = total();
    const ps = S.m.pageSize;
    const from = n ? S.page * ps + 1 : 0;
    const to = Math.min(n, (S.page + 1) * ps);
    let text;
    if (!S.done) {
      const pct = Math.floor((100 * S.scanned) / Math.max(1, S.m.rows));
      text = `${fmt(n)} matches so far · searching ${pct}%`;
    } else {
      text = n ? `${fmt(from)}–${fmt(to)} of ${fmt(n)} ${S.m.noun}` : `no ${S.m.noun} match`;
      if (n !== S.m.rows) text += ` (of ${fmt(S.m.rows)})`;
    }
    $("status").textContent = text;
    const pages = Math.max(1, Math.ceil(n / ps));
    $("pageinfo").textContent = `page ${fmt(S.page + 1)} of ${S.done ? fmt(pages) : "…"}`;
    $("prev").disabled = S.page === 0;
    $("next").disabled = S.done && S.page + 1 >= pages;
  }

  let listToken = 0;

  async function renderList() {
    const mine = ++listToken;
    const ps = S.m.pageSize;
    const start = S.page * ps;
    const indices = [];
    if (S.list === null) {
      for (let i = start; i < Math.min(start + ps, S.m.rows); i++) indices.push(i);
    } else {
      for (let i = start; i < Math.min(start + ps, S.list.length); i++) indices.push(S.list[i]);
    }
    const per = S.m.rowsPerShard;
    const shards = [...new Set(indices.map((i) => Math.floor(i / per)))];
    let loaded;
    try {
      loaded = await Promise.all(shards.map((s) => load("rows/" + s)));
    } catch (err) {
      fail(err);
      return;
    }
    if (mine !== listToken) return;
    const byShard = new Map(shards.map((s, k) => [s, loaded[k]]));
    S.shown = indices.map((i) => ({ index: i, row: byShard.get(Math.floor(i / per))[i % per] }));
    const ol = $("rows");
    const items = S.shown.map(({ index, row }, pos) => {
      const li = el(
        "li",
        { "data-row": index, "data-key": row.key, "data-item": row.item, role: "option" },
        el("span", { class: "rid" }, row.id),
        ...row.b.map(([kind, text]) => badge(kind, text)),
        el("div", { class: "snippet" }, row.s)
      );
      li.addEventListener("click", () => {
        select(pos);
        openSelected();
      });
      return li;
    });
    ol.replaceChildren(...items);
    ol.start = start + 1;
    // What this list shows, for tests and scripts: the query, whether the scan is over, the count.
    ol.dataset.query = S.query;
    ol.dataset.done = String(S.done);
    ol.dataset.total = String(total());
    ol.dataset.page = String(S.page);
    if (S.sel >= S.shown.length) S.sel = S.shown.length - 1;
    if (S.sel < 0 && S.shown.length) S.sel = 0;
    select(S.sel, false);
    markOpen();
    status();
    if (!S.ready.list) {
      S.ready.list = true;
      LPV.timing.list = performance.now();
      checkReady();
    }
  }

  function select(pos, scroll = true) {
    const lis = $("rows").children;
    for (const li of lis) li.classList.remove("selected");
    S.sel = pos;
    if (pos >= 0 && pos < lis.length) {
      lis[pos].classList.add("selected");
      lis[pos].setAttribute("aria-selected", "true");
      if (scroll) lis[pos].scrollIntoView({ block: "nearest" });
    }
  }

  function markOpen() {
    for (const li of $("rows").children) {
      const open = S.open && li.dataset.key === S.open.key && Number(li.dataset.item) === S.open.item;
      li.classList.toggle("open", Boolean(open));
    }
  }

  function openSelected() {
    const hit = S.shown[S.sel];
    if (!hit) return;
    const hash = hashFor(hit.row.key, hit.row.item);
    if (location.hash === hash) openPage(hit.row.key, hit.row.item);
    else location.hash = hash;
  }

  function move(delta) {
    const next = S.sel + delta;
    if (next >= 0 && next < S.shown.length) return select(next);
    if (delta > 0 && !$("next").disabled) {
      S.page += 1;
      S.sel = 0;
      renderList();
    } else if (delta < 0 && S.page > 0) {
      S.page -= 1;
      S.sel = S.m.pageSize - 1;
      renderList();
    }
  }

  function turnPage(delta) {
    if (delta > 0 && $("next").disabled) return;
    if (delta < 0 && S.page === 0) return;
    S.page += delta;
    S.sel = 0;
    renderList();
  }

  // -- links -------------------------------------------------------------------------------------

  function hashFor(key, item) {
    return "#image=" + encodeURIComponent(key) + (item >= 0 ? "&item=" + item : "");
  }

  function parseHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has("image")) return null;
    const item = Number.parseInt(params.get("item") || "-1", 10);
    return { key: params.get("image"), item: Number.isFinite(item) ? item : -1 };
  }

  // -- the image page ----------------------------------------------------------------------------

  let pageToken = 0;

  async function openPage(key, item) {
    const mine = ++pageToken;
    let pages;
    try {
      pages = await load("pages/" + bucketOf(key, S.m.buckets));
    } catch (err) {
      fail(err);
      return;
    }
    if (mine !== pageToken) return;
    const page = Object.prototype.hasOwnProperty.call(pages, key) ? pages[key] : null;
    if (!page) {
      $("detail").replaceChildren(el("p", { class: "error" }, "No page for image " + key));
      return;
    }
    S.open = { key, item };
    renderPage(page, item);
    markOpen();
    const pos = S.shown.findIndex(({ row }) => row.key === key && row.item === item);
    if (pos >= 0 && pos !== S.sel) select(pos); // a link's row, where this list page has it
    if (!S.ready.detail) {
      S.ready.detail = true;
      LPV.timing.detail = performance.now();
      checkReady();
    }
  }

  function checkReady() {
    if (S.ready.list && S.ready.detail && !LPV.timing.firstPage) {
      LPV.timing.firstPage = performance.now();
      document.documentElement.dataset.ready = "1";
    }
  }

  function renderPage(p, current) {
    const sk = S.m.skeleton;
    const root = el("article", { class: "page", "data-key": p.key });
    const meta = [];
    if (p.image_id !== null && p.image_id !== undefined) meta.push("image id " + p.image_id);
    if (p.w && p.h) meta.push(`${p.w}×${p.h}`);
    meta.push(p.context ? `${p.persons.length} people with keypoints` : "no keypoints for this image");
    meta.push(`${p.items.length} ${p.items.length === 1 ? "item" : "items"}`);
    const head = el(
        "header",
        { class: "pagehead" },
        el("h2", {}, p.key || "(no image)"),
        el("a", { class: "permalink", href: hashFor(p.key, -1), title: "Link to this image's page" }, "link"),
        el("span", { class: "meta" }, meta.join(" · "))
      );
    const fig = figure(p, sk);
    const side = el("div", { class: "side" }, toggles(fig), legend(sk));
    if (p.captions.length) {
      side.append(el("h3", {}, "Captions"), el("ul", { class: "captions" }, ...p.captions.map((c) => el("li", {}, c))));
    }
    // The picture stays in view while the text scrolls under it: a claim's people light up.
    root.append(el("div", { class: "sticky" }, head, el("div", { class: "top" }, fig, side)));
    p.items.forEach((it, n) => root.append(renderItem(it, n, fig)));
    $("detail").replaceChildren(root);
    fitFigure();
    const target = root.querySelector(`[data-item="${current}"]`);
    if (target) {
      target.classList.add("current");
      const detail = $("detail");
      detail.scrollTop = 0;
      const below = root.querySelector(".sticky").getBoundingClientRect().bottom;
      detail.scrollTop = target.getBoundingClientRect().top - below - 8;
      focusPersons(fig, target.dataset.persons ? target.dataset.persons.split(",").map(Number) : []);
    } else {
      $("detail").scrollTop = 0;
    }
  }

  /* The figure at its final size before the photo arrives (the size is in the data), so
     nothing moves when it does: within 62% of the pane's width and 44% of the window's height. */
  function fitFigure() {
    const fig = document.querySelector("#detail .figure");
    if (!fig || !fig.dataset.w) return;
    const w = Number(fig.dataset.w);
    const h = Number(fig.dataset.h);
    const room = fig.parentElement.clientWidth * 0.62;
    const scale = Math.min(room / w, (window.innerHeight * 0.44) / h);
    fig.style.width = Math.max(1, Math.round(w * scale)) + "px";
    fig.style.height = Math.max(1, Math.round(h * scale)) + "px";
  }

  function figure(p, sk) {
    const sized = p.w && p.h;
    const wrap = el("div", { class: "figure" + (sized ? " sized" : ""), "data-w": sized ? p.w : null, "data-h": sized ? p.h : null });
    const overlay = svg("svg", { class: "overlay", role: "img", "aria-label": `${p.persons.length} people` });
    overlay.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const draw = (w, h) => {
      overlay.setAttribute("viewBox", `0 0 ${w} ${h}`);
      drawPeople(overlay, p, sk, w, h);
    };
    if (p.src) {
      const img = el("img", { src: p.src, alt: p.key, decoding: "async" });
      img.addEventListener("load", () => {
        if (!LPV.timing.image) LPV.timing.image = performance.now();
        if (!(p.w && p.h)) draw(img.naturalWidth || 1, img.naturalHeight || 1);
      });
      img.addEventListener("error", () => wrap.classList.add("broken"));
      wrap.append(img);
    } else {
      const ph = el("div", { class: "placeholder" }, "image not available");
      ph.style.aspectRatio = p.w && p.h ? `${p.w} / ${p.h}` : "4 / 3";
      wrap.append(ph);
    }
    if (p.w && p.h) draw(p.w, p.h);
    else if (!p.src) draw(4, 3);
    wrap.append(overlay);
    return wrap;
  }

  function drawPeople(overlay, p, sk, W, H) {
    overlay.replaceChildren();
    const big = Math.max(W, H);
    const r = Math.max(big / 150, 1.5);
    const sw = Math.max(big / 320, 1);
    for (const o of p.objects) {
      const [x1, y1, x2, y2] = o.box;
      const rect = svg("rect", { class: "object", x: x1 * W, y: y1 * H, width: (x2 - x1) * W, height: (y2 - y1) * H, "stroke-width": sw });
      rect.append(svgTitle(o.category));
      overlay.append(rect);
    }
    p.persons.forEach((person, i) => {
      const g = svg("g", { class: "person", "data-person": i, "data-label": person.label });
      const [x1, y1, x2, y2] = person.box;
      g.append(svg("rect", { class: "box", x: x1 * W, y: y1 * H, width: (x2 - x1) * W, height: (y2 - y1) * H, stroke: sk.box, "stroke-width": sw }));
      const kp = person.kp;
      sk.limbs.forEach(([a, b], j) => {
        const ka = kp[a];
        const kb = kp[b];
        if (!ka || !kb || ka[2] <= 0 || kb[2] <= 0) return;
        const dim = ka[2] === 1 || kb[2] === 1;
        g.append(svg("line", {
          class: "limb" + (dim ? " dim" : ""), x1: ka[0] * W, y1: ka[1] * H, x2: kb[0] * W, y2: kb[1] * H,
          stroke: sk.colours[sk.limbSides[j]], "stroke-width": sw * 1.8,
        }));
      });
      kp.forEach((k, j) => {
        if (!(k[2] > 0)) return;
        const colour = sk.colours[sk.pointSides[j]];
        const visible = k[2] === 2;
        const c = svg("circle", {
          class: "kp " + (visible ? "visible" : "hidden"), cx: k[0] * W, cy: k[1] * H, r,
          "data-keypoint": j, "stroke-width": visible ? sw * 0.6 : sw,
        });
        c.setAttribute(visible ? "fill" : "stroke", colour);
        c.append(svgTitle(`${person.label} ${sk.names[j]}${visible ? "" : " (hidden)"}`));
        g.append(c);
      });
      const label = svg("text", {
        class: "label", x: x1 * W + sw, y: Math.max(y1 * H - sw * 2, big / 30), "font-size": big / 30, "stroke-width": sw * 2.5,
      });
      label.textContent = person.label;
      g.append(label);
      overlay.append(g);
    });
  }

  function svgTitle(text) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = text;
    return t;
  }

  function focusPersons(fig, persons) {
    for (const g of fig.querySelectorAll("g.person")) {
      g.classList.toggle("focus", persons.includes(Number(g.dataset.person)));
    }
  }

  function toggles(fig) {
    const box = el("div", { class: "toggles" });
    for (const [name, label, on] of [["people", "people", true], ["boxes", "boxes", true], ["labels", "labels", true], ["objects", "objects", false]]) {
      const input = el("input", { type: "checkbox", "data-toggle": name, checked: on });
      input.addEventListener("change", () => {
        if (name === "objects") fig.classList.toggle("objects", input.checked);
        else fig.classList.toggle("no-" + name, !input.checked);
      });
      box.append(el("label", {}, input, " " + label));
    }
    return box;
  }

  function legend(sk) {
    const sw = (colour, hollow) => {
      const s = el("span", { class: "swatch" + (hollow ? " hollow" : "") });
      s.style.background = colour;
      s.style.borderColor = colour;
      return s;
    };
    const box = el("span", { class: "swatch" });
    box.style.borderColor = sk.box;
    box.style.borderRadius = "2px";
    return el(
      "div",
      { class: "legend" },
      el("span", {}, sw(sk.colours.left), "person's left"),
      el("span", {}, sw(sk.colours.right), "person's right"),
      el("span", {}, sw(sk.colours.centre), "centre"),
      el("span", {}, sw(sk.colours.centre, true), "hidden point"),
      el("span", {}, box, "box")
    );
  }

  // -- items -------------------------------------------------------------------------------------

  function renderItem(it, n, fig) {
    if (it.type === "ehpaub") return ehpaubItem(it, n);
    if (it.type === "poseqa") return poseqaItem(it, n, fig);
    return recordItem(it, n, fig);
  }

  function itemHeader(id, ...badges) {
    return el("header", {}, el("span", { class: "rid" }, id), ...badges);
  }

  function recordItem(it, n, fig) {
    const rejected = it.status === "rejected";
    const sec = el("section", { class: "item record" + (rejected ? " rejected" : ""), "data-item": n, id: "item-" + n });
    sec.append(
      itemHeader(
        it.id,
        badge("task", it.task),
        rejected ? badge("filter", "dropped: " + it.filter) : badge("answer", "kept"),
        rejected && it.whole ? el("span", { class: "meta" }, "the whole reply") : null
      )
    );
    for (const t of it.turns) {
      const human = t.from === "human";
      const text = el("p", { class: "text" });
      writeClaims(text, t.value, t.claims || [], fig);
      sec.append(el("div", { class: "turn " + (human ? "human" : "gpt") }, el("span", { class: "who" }, human ? "Q" : "A"), text));
      const bad = (t.claims || []).filter((c) => c[2] === "contradicted");
      if (bad.length) sec.append(el("ul", { class: "claimlist" }, ...bad.map((c) => el("li", {}, "✗ " + claimNote(c)))));
    }
    return sec;
  }

  /* A claim [start, end, verdict, kind, subject, predicate, reason, persons] in words. */
  function claimNote(c) {
    return `${c[2]}: ${c[3]}, ${c[4] || "?"} ${c[5]}` + (c[6] ? ` (${c[6]})` : "");
  }

  /* `text` with its claims' spans in <mark>s; overlapping claims show the worst verdict. */
  function writeClaims(node, text, claims, fig) {
    if (!claims.length) {
      node.textContent = text;
      return;
    }
    const cuts = new Set([0, text.length]);
    for (const c of claims) {
      cuts.add(c[0]);
      cuts.add(c[1]);
    }
    const points = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i + 1 < points.length; i++) {
      const a = points[i];
      const b = points[i + 1];
      const piece = text.slice(a, b);
      const over = claims.filter((c) => c[0] <= a && b <= c[1]);
      if (!over.length) {
        node.append(document.createTextNode(piece));
        continue;
      }
      const verdict = VERDICTS.find((v) => over.some((c) => c[2] === v)) || "other";
      const persons = [...new Set(over.flatMap((c) => c[7] || []))];
      const mark = el("mark", { class: "claim v-" + verdict, title: over.map(claimNote).join("\n"), "data-verdict": verdict }, piece);
      mark.addEventListener("mouseenter", () => focusPersons(fig, persons));
      mark.addEventListener("mouseleave", () => focusPersons(fig, []));
      node.append(mark);
    }
  }

  function ehpaubItem(it, n) {
    const sec = el("section", { class: "item ehpaub", "data-item": n, id: "item-" + n });
    sec.append(itemHeader(String(it.id), badge("category", it.title)));
    sec.append(el("h3", {}, "Question"), el("p", { class: "text" }, it.question));
    sec.append(el("h3", {}, "Reference answer"), el("p", { class: "text" }, it.reference));
    for (const a of it.answers) {
      const box = el("div", { class: "answer", "data-model": a.model });
      box.append(el("h4", {}, a.model));
      box.append(a.text === null ? el("p", { class: "empty" }, "no answer") : el("p", { class: "text" }, a.text));
      for (const r of a.reviews) {
        const rv = el("div", { class: "review", "data-judge": r.judge });
        if (r.scores) {
          const [ref, model] = r.scores;
          rv.append(el("div", { class: "scores" }, `${r.judge}: model ${model} vs reference ${ref} (gap ${+(ref - model).toFixed(2)})`));
        } else {
          rv.append(el("div", { class: "scores" }, `${r.judge}: ${r.status.replace(/_/g, " ")}`));
        }
        if (r.content) rv.append(el("p", { class: "text" }, r.content));
        box.append(rv);
      }
      sec.append(box);
    }
    return sec;
  }

  function poseqaItem(it, n) {
    const sec = el("section", { class: "item poseqa", "data-item": n, id: "item-" + n, "data-persons": (it.persons || []).join(",") });
    sec.append(itemHeader(String(it.id), badge("family", it.title)));
    sec.append(el("h3", {}, "Question"), el("p", { class: "text" }, it.question));
    sec.append(el("p", {}, el("strong", {}, "Gold answer: "), it.gold));
    for (const a of it.answers) {
      const box = el("div", { class: "answer", "data-model": a.model });
      const mark = a.correct === true ? el("span", { class: "mark-right" }, "✓ right") : el("span", { class: "mark-wrong" }, a.text === null ? "✗ no answer" : a.parsed === null ? "✗ unreadable" : "✗ wrong");
      box.append(el("h4", {}, a.model + " ", mark));
      if (a.text !== null) {
        box.append(el("p", { class: "text" }, a.text));
        box.append(el("p", { class: "meta" }, "read as: " + (a.parsed === null ? "(nothing)" : a.parsed)));
      }
      sec.append(box);
    }
    return sec;
  }

  // -- controls ----------------------------------------------------------------------------------

  function buildControls() {
    const m = S.m;
    document.title = m.title + " · llava-pose view";
    $("title").textContent = m.title;
    $("summary").replaceChildren(...m.summary.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    $("notes").replaceChildren(...m.notes.map((t) => el("p", {}, t)));
    const facets = m.facets.map((f) => {
      S.filters[f.name] = new Set();
      const fs = el("fieldset", { "data-facet": f.name }, el("legend", {}, f.title));
      f.values.forEach((v, i) => {
        const input = el("input", { type: "checkbox", "data-facet": f.name, value: v.value });
        input.addEventListener("change", () => {
          if (input.checked) S.filters[f.name].add(i);
          else S.filters[f.name].delete(i);
          recompute();
        });
        fs.append(el("label", {}, input, " " + v.value + " ", el("span", { class: "count" }, fmt(v.count))));
      });
      return fs;
    });
    $("facets").replaceChildren(...facets);
    if (m.sorts.length) {
      $("sortbox").hidden = false;
      const sel = $("sort");
      sel.replaceChildren(el("option", { value: "" }, "file order"), ...m.sorts.map((s) => el("option", { value: s.name }, s.title)));
      sel.addEventListener("change", () => {
        S.sort = sel.value;
        recompute();
      });
    }
    const search = $("search");
    let timer = 0;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (search.value.trim() !== S.query) {
          S.query = search.value.trim();
          recompute();
        }
      }, 250);
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        clearTimeout(timer);
        S.query = search.value.trim();
        recompute();
      }
    });
    $("prev").addEventListener("click", () => turnPage(-1));
    $("next").addEventListener("click", () => turnPage(1));
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", fitFigure);
    window.addEventListener("hashchange", () => {
      const h = parseHash();
      if (h) openPage(h.key, h.item);
    });
  }

  function onKey(e) {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) {
      if (e.key === "Escape") t.blur();
      if (t.type !== "checkbox") return;
    }
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const keys = {
      j: () => move(1), ArrowDown: () => move(1),
      k: () => move(-1), ArrowUp: () => move(-1),
      Enter: openSelected,
      n: () => turnPage(1), ArrowRight: () => turnPage(1),
      p: () => turnPage(-1), ArrowLeft: () => turnPage(-1),
      "/": () => $("search").focus(),
    };
    const action = keys[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  }

  function fail(err) {
    console.error(err);
    $("status").replaceChildren(el("span", { class: "error" }, String(err.message || err)));
  }

  async function main() {
    try {
      S.m = await load("manifest");
    } catch (err) {
      fail(err);
      return;
    }
    buildControls();
    await renderList();
    const h = parseHash();
    if (h) await openPage(h.key, h.item);
    else if (S.shown.length) await openPage(S.shown[0].row.key, S.shown[0].row.item);
    else {
      S.ready.detail = true;
      checkReady();
    }
  }

  main();
})();
