/* paramscope HTML report: draws the treemap and the tensor table from the JSON block #paramscope-data.
 * Plain ES5, no dependencies but Plotly (embedded in the same page). Names come from files we do not
 * control: they reach the DOM only through textContent, and Plotly (which reads a little HTML in its
 * labels) only entity-escaped. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("paramscope-data").textContent);

  // ---- formatting (the same rules as paramscope.text) -------------------------------------------
  function exact(n) {
    if (n === null || n === undefined) return "?";
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");  // numbers above 2**53 arrive as strings
  }
  var UNITS = [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]];
  function human(n) {
    if (n === null || n === undefined) return "?";
    var v = Number(n);
    for (var i = 0; i < UNITS.length; i++) if (v >= UNITS[i][1]) return (v / UNITS[i][1]).toFixed(1) + UNITS[i][0];
    return String(n);
  }
  var BYTE_UNITS = [["TiB", Math.pow(2, 40)], ["GiB", Math.pow(2, 30)], ["MiB", Math.pow(2, 20)], ["KiB", 1024]];
  function humanBytes(n) {
    if (n === null || n === undefined) return "?";
    var v = Number(n);
    for (var i = 0; i < BYTE_UNITS.length; i++) {
      if (v >= BYTE_UNITS[i][1]) return (v / BYTE_UNITS[i][1]).toFixed(1) + " " + BYTE_UNITS[i][0];
    }
    return String(n) + " B";
  }
  function shape(s) { return s === null ? "uninitialized" : "[" + s.join(", ") + "]"; }
  // Plotly renders a few tags (<b>, <br>, <a>) in labels and hover text: names must be entities.
  function ent(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  // ---- treemap ---------------------------------------------------------------------------------
  var COLOURS = { trainable: "#2da44e", frozen: "#8c959f", mixed: "#d4a72c", unknown: "#54aeff" };
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#1f77b4", "#17becf", "#bcbd22", "#7f7f7f"];
  var tree = data.tree;
  var count = tree.parent.length;
  var total = Number(data.total);
  var dtypeColour = {};
  data.dtypes.forEach(function (d, i) { dtypeColour[d] = PALETTE[i % PALETTE.length]; });
  dtypeColour.mixed = "#d0d7de";

  function trainState(i) {
    if (!data.trainability_known) return "unknown";
    var t = tree.trainable[i], v = Number(tree.value[i]);
    if (t === null) return "unknown";
    if (Number(t) >= v) return "trainable";
    return Number(t) === 0 ? "frozen" : "mixed";
  }
  // Modules get a lighter tint of their colour than tensors, so the nesting shows.
  function tint(hex, amount) {
    var n = parseInt(hex.slice(1), 16), out = "#";
    [16, 8, 0].forEach(function (shift) {
      var c = (n >> shift) & 255;
      c = Math.round(c + (255 - c) * amount);
      out += (c < 16 ? "0" : "") + c.toString(16);
    });
    return out;
  }
  function colours(mode) {
    var out = new Array(count);
    for (var i = 0; i < count; i++) {
      var c = mode === "dtype" ? (dtypeColour[tree.dtype[i]] || dtypeColour.mixed) : COLOURS[trainState(i)];
      out[i] = tree.kind[i] === "m" ? tint(c, 0.45) : c;
    }
    return out;
  }
  function legend(mode) {
    var box = document.getElementById("legend");
    box.textContent = "";
    var items;
    if (mode === "dtype") {
      items = data.dtypes.map(function (d) { return [d, dtypeColour[d]]; });
      items.push(["several dtypes", dtypeColour.mixed]);
    } else if (!data.trainability_known) {
      items = [["trainability unknown (a checkpoint does not record requires_grad)", COLOURS.unknown]];
    } else {
      items = [["trainable", COLOURS.trainable], ["frozen", COLOURS.frozen], ["partly trainable", COLOURS.mixed]];
    }
    items.forEach(function (item) {
      var span = document.createElement("span");
      var sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = item[1];
      span.appendChild(sw);
      span.appendChild(document.createTextNode(item[0]));
      box.appendChild(span);
    });
  }

  function drawTreemap() {
    var el = document.getElementById("treemap");
    if (!count || !(total > 0)) {
      el.innerHTML = "<p class=\"empty\">No parameters to draw.</p>";
      return;
    }
    var ids = new Array(count), parents = new Array(count), labels = new Array(count);
    var values = new Array(count), custom = new Array(count);
    for (var i = 0; i < count; i++) {
      var p = tree.parent[i], v = tree.value[i];
      ids[i] = String(i);
      parents[i] = p < 0 ? "" : String(p);
      labels[i] = ent(tree.label[i]);
      values[i] = Number(v);
      var k = tree.kind[i];
      var details = k === "t" ? "tensor " + shape(tree.shape[i]) : k === "o" ? "smaller children, lumped together"
        : (tree.type[i] || "module");
      details += " · " + (tree.dtype[i] === "mixed" ? "several dtypes" : tree.dtype[i] || "no dtype");
      var train = tree.trainable[i] === null ? "trainable: unknown" : "trainable: " + exact(tree.trainable[i]);
      custom[i] = [ent(tree.path[i]), exact(v), human(v), (100 * Number(v) / total).toFixed(1) + "%",
                   ent(details), train];
    }
    var trace = {
      type: "treemap", ids: ids, parents: parents, labels: labels, values: values, customdata: custom,
      branchvalues: "total", maxdepth: data.maxdepth, sort: true,
      texttemplate: "%{label}<br>%{customdata[2]}",
      hovertemplate: "<b>%{customdata[0]}</b><br>%{customdata[1]} parameters (%{customdata[2]})" +
                     "<br>%{customdata[3]} of the model<br>%{customdata[4]}<br>%{customdata[5]}<extra></extra>",
      marker: { colors: colours(data.colour), line: { width: 1, color: "#ffffff" } },
      pathbar: { visible: true }, tiling: { pad: 2 }
    };
    var layout = { margin: { t: 28, l: 4, r: 4, b: 4 }, uniformtext: { minsize: 9, mode: "hide" } };
    Plotly.newPlot(el, [trace], layout, { displaylogo: false, responsive: true });
    if (data.tree_nodes > count) {
      document.getElementById("treemap-note").textContent = "The treemap shows the largest " + exact(count) +
        " of " + exact(data.tree_nodes) + " modules and tensors; smaller siblings are lumped into \u201c\u2026 N more\u201d " +
        "tiles of their exact total. The table below lists every tensor.";
    }
  }

  function setColourMode(mode) {
    legend(mode);
    var el = document.getElementById("treemap");
    if (el.data) Plotly.restyle(el, { "marker.colors": [colours(mode)] });
    el.setAttribute("data-colour", mode);
  }

  // ---- tensor table ----------------------------------------------------------------------------
  var PAGE = 100;
  var table = data.tensors;
  var rows = table.rows;
  var numeric = table.numeric;
  var view = [];        // indices into rows after filtering and sorting
  var page = 0;
  var sortCol = -1, sortDir = 1;

  function cellText(col, v) {
    var kind = table.kinds[col];
    if (v === null || v === undefined) return "-";
    if (kind === "count") return exact(v);
    if (kind === "bytes") return humanBytes(v);
    if (kind === "shape") return shape(v);
    if (v === true) return "yes";
    if (v === false) return "no";
    return String(v);
  }
  function sortKey(col, v) {
    if (v === null || v === undefined) return null;
    if (numeric[col]) return Number(v);
    if (table.kinds[col] === "shape") return v.length ? v.reduce(function (a, b) { return a * b; }, 1) : 1;
    return String(v);
  }
  function applyView() {
    var q = document.getElementById("search").value.trim().toLowerCase();
    view = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (!q || String(r[0]).toLowerCase().indexOf(q) >= 0 || String(r[2]).toLowerCase() === q) view.push(i);
    }
    if (sortCol >= 0) {
      var keys = new Array(rows.length);
      view.forEach(function (i) { keys[i] = sortKey(sortCol, rows[i][sortCol]); });
      view.sort(function (a, b) {
        var x = keys[a], y = keys[b];
        if (x === y) return a - b;
        if (x === null) return 1;           // unknowns last, whichever the direction
        if (y === null) return -1;
        return (x < y ? -1 : 1) * sortDir;
      });
    }
    page = 0;
    drawPage();
  }
  function drawPage() {
    var body = document.querySelector("#tensor-table tbody");
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var frag = document.createDocumentFragment();
    var end = Math.min(view.length, (page + 1) * PAGE);
    for (var k = page * PAGE; k < end; k++) {
      var r = rows[view[k]];
      var tr = document.createElement("tr");
      for (var c = 0; c < r.length; c++) {
        var td = document.createElement("td");
        td.textContent = cellText(c, r[c]);
        if (numeric[c]) {
          td.className = "num";
          if (r[c] !== null) td.setAttribute("data-value", String(r[c]));
        } else if (c === 0) {
          td.className = "name mono";
        }
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
    var shown = document.getElementById("match-count");
    shown.setAttribute("data-value", String(view.length));
    shown.textContent = exact(view.length) + " of " + exact(rows.length) + " tensors";
    document.getElementById("page-label").textContent = "page " + (page + 1) + " of " + pages;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }
  function setupTable() {
    var headers = document.querySelectorAll("#tensor-table th");
    Array.prototype.forEach.call(headers, function (th, col) {
      th.addEventListener("click", function () {
        sortDir = sortCol === col ? -sortDir : (numeric[col] ? -1 : 1);  // numbers: largest first
        sortCol = col;
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
        applyView();
      });
    });
    var timer = null;
    document.getElementById("search").addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(applyView, rows.length > 20000 ? 150 : 0);
    });
    document.getElementById("prev").addEventListener("click", function () { page--; drawPage(); });
    document.getElementById("next").addEventListener("click", function () { page++; drawPage(); });
    applyView();
  }

  setupTable();
  legend(data.colour);
  drawTreemap();
  document.getElementById("treemap").setAttribute("data-colour", data.colour);
  Array.prototype.forEach.call(document.querySelectorAll("input[name=colour]"), function (input) {
    input.addEventListener("change", function () { if (input.checked) setColourMode(input.value); });
  });
  document.body.setAttribute("data-ready", "1");
})();
