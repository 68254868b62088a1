// report.html's figures, drawn with Plotly from the page's JSON (trainer/report_html.py
// writes both). Nothing here fetches anything: the page must open offline.
// window.__report tells a test what the page did: ready, lines, selected.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var R = (window.__report = { ready: false, lines: D.shown || 0, selected: D.shown || 0 });
  if (typeof Plotly === "undefined") { R.ready = true; return; }

  var CONFIG = { displaylogo: false, responsive: true };
  var FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 };
  var MAX_CURVES = 30;       // learning curves drawn for a selection, the best first
  var lower = !D.higher_is_better;
  var pc = D.parcoords;
  var pcDiv = document.getElementById("pc");
  var drawn = [];

  function fmt(x) {
    if (x === null || x === undefined || !isFinite(x)) return "n/a";
    return Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : +x.toPrecision(4) + "";
  }
  function hide(id) { var el = document.getElementById(id); if (el) el.style.display = "none"; }
  function layout(extra) {
    var base = { font: FONT, margin: { l: 60, r: 30, t: 30, b: 50 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff" };
    for (var k in extra) base[k] = extra[k];
    return base;
  }

  // ---- parallel coordinates ----------------------------------------------------------------
  var colorDim = -1;
  if (pc && pc.dims.length && D.shown > 0) {
    pc.dims.forEach(function (d, i) { if (d.name === pc.color) colorDim = i; });
    var dims = pc.dims.map(function (d) {
      var dim = { label: d.label, values: d.values, range: d.range };
      if (d.tickvals) { dim.tickvals = d.tickvals; dim.ticktext = d.ticktext; }
      return dim;
    });
    var line = { color: "#4c72b0" };
    if (colorDim >= 0) {
      var c = pc.dims[colorDim];
      var finiteVals = c.values.filter(function (v, j) { return D.line_finite[j]; });
      line = {
        color: c.values, colorscale: "Viridis", reversescale: lower, showscale: true,
        cmin: Math.min.apply(null, finiteVals.length ? finiteVals : [0]),
        cmax: Math.max.apply(null, finiteVals.length ? finiteVals : [1]),
        colorbar: { title: { text: D.metric_label }, thickness: 12 }
      };
    }
    drawn.push(Plotly.newPlot(pcDiv, [{ type: "parcoords", dimensions: dims, line: line,
      labelangle: -20, labelfont: { size: 12 } }],
      layout({ margin: { l: 70, r: 70, t: 60, b: 30 }, height: 460 }), CONFIG));
  } else {
    hide("pc-section");
  }

  // A brush that reaches an axis end takes in everything past it: the values are written
  // with 5 digits, the axis range with all of them (plotly draws no brush past the range).
  function inRange(v, cr, range) {
    if (!cr) return true;
    var eps = 1e-9 * (range[1] - range[0]);
    return (Array.isArray(cr[0]) ? cr : [cr]).some(function (r) {
      return (v >= r[0] || r[0] <= range[0] + eps) && (v <= r[1] || r[1] >= range[1] - eps);
    });
  }

  function selection() {
    var n = D.shown, keep = [];
    var trace = pcDiv.data && pcDiv.data[0];
    var constraints = trace ? trace.dimensions.map(function (d) { return d.constraintrange; }) : [];
    for (var j = 0; j < n; j++) {
      var ok = true;
      for (var i = 0; i < constraints.length && ok; i++) {
        if (constraints[i]) ok = inRange(pc.dims[i].values[j], constraints[i], pc.dims[i].range);
      }
      if (ok) keep.push(j);
    }
    return keep;
  }

  function updateSelection() {
    var keep = selection();
    R.selected = keep.length;
    document.getElementById("selected-label").textContent =
      keep.length.toLocaleString() + " of them selected";
    drawCurves(keep.length < D.shown ? keep : null);
  }

  // ---- learning curves ---------------------------------------------------------------------
  var curves = D.curves, seriesName = curves.series.val_loss ? "val_loss" : "train_loss";
  var series = curves.series[seriesName];

  function byRank(lines) {
    return lines.slice().sort(function (a, b) { return D.line_rank[a] - D.line_rank[b]; });
  }

  function drawCurves(selected) {
    var div = document.getElementById("curves");
    if (!series || !curves.epoch.length) { hide("curves-section"); return Promise.resolve(); }
    var lines, title;
    if (selected) {
      lines = byRank(selected).slice(0, MAX_CURVES);
      title = "the selection: " + lines.length + " best of " + selected.length.toLocaleString();
    } else {
      var all = byRank(D.line_finite.map(function (f, j) { return f ? j : -1; })
        .filter(function (j) { return j >= 0; }));
      lines = all.slice(0, 10).concat(all.length > 15 ? all.slice(-5) : all.slice(10));
      title = "the best 10 and the worst 5 settings shown (brush the axes above to choose)";
    }
    var positive = true, traces = lines.map(function (j, k) {
      var y = series[j];
      y.forEach(function (v) { if (v !== null && v <= 0) positive = false; });
      return { type: "scatter", mode: "lines", x: curves.epoch, y: y,
        name: "#" + (D.line_rank[j] + 1), text: pc.text[j],
        hovertemplate: "%{text}<br>epoch %{x}: " + seriesName.replace("_", " ") +
          " %{y:.4g}<extra>#" + (D.line_rank[j] + 1) + "</extra>",
        line: { width: k < 3 ? 2.2 : 1.2 }, opacity: 0.85 };
    });
    return Plotly.react(div, traces, layout({
      title: { text: title, font: { size: 13 } }, height: 380, showlegend: lines.length <= 15,
      xaxis: { title: { text: "epoch" } },
      yaxis: { title: { text: seriesName.replace("_", " ") + " (mean over replicates)" },
               type: positive ? "log" : "linear" },
      hovermode: "closest" }), CONFIG);
  }

  // ---- importance ----------------------------------------------------------------------------
  var imp = D.importance;
  if (imp && imp.params && imp.params.length) {
    var ps = imp.params.slice().reverse();
    var traces = [{ type: "bar", orientation: "h", y: ps.map(function (r) { return r.param; }),
      x: ps.map(function (r) { return 100 * r.share; }), name: "share of the variance",
      marker: { color: ps.map(function (r) { return r.within_noise ? "#bbb" : "#4c72b0"; }) },
      hovertemplate: "%{y}: %{x:.1f}% of the variance<extra></extra>" }];
    if (ps.some(function (r) { return r.noise_share !== null; })) {
      traces.push({ type: "scatter", mode: "markers", y: ps.map(function (r) { return r.param; }),
        x: ps.map(function (r) { return r.noise_share === null ? null : 400 * r.noise_share; }),
        name: "4x what replicate noise alone gives", marker: { symbol: "line-ns-open", size: 18, color: "#c44e52" },
        hovertemplate: "%{y}: noise alone gives %{customdata:.2f}%<extra></extra>",
        customdata: ps.map(function (r) { return r.noise_share === null ? null : 100 * r.noise_share; }) });
    }
    drawn.push(Plotly.newPlot("importance", traces, layout({
      height: 100 + 34 * ps.length,
      xaxis: { title: { text: "% of the variance of the settings' " + imp.transform } },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      margin: { l: 110, r: 30, t: 40, b: 50 }, showlegend: traces.length > 1 }), CONFIG));
    var note = "Functional ANOVA's main effects, computed on the settings (means over replicates).";
    if (imp.noise_std !== null) note += " Replicates (seeds, folds) differ by a std of " +
      fmt(imp.noise_std) + " in " + imp.transform + "; grey bars are within 4x of what that noise alone explains.";
    if (imp.pairs.length) note += " Pairs: " + imp.pairs.map(function (p) {
      return p.pair.join(" x ") + " " + (100 * p.share).toFixed(1) + "% (interaction " +
        (100 * p.interaction_share).toFixed(1) + "%)"; }).join("; ") + ".";
    if (D.summary) note += " Results.summary: " + D.summary.within_noise_of_best + " of " +
      D.summary.settings.toLocaleString() + " settings are within noise of the best (95% intervals overlap)" +
      (D.summary.median_relative_std !== null ? "; the median setting's replicates spread by " +
        (100 * D.summary.median_relative_std).toFixed(1) + "% of its mean." : ".");
    document.getElementById("importance-note").textContent = note;
  } else {
    document.getElementById("importance-note").textContent =
      (imp && imp.message) || "No importance to compute.";
    hide("importance");
  }

  // ---- interaction heatmaps ------------------------------------------------------------------
  var hmBox = document.getElementById("heatmaps");
  if (!D.heatmaps.length) hide("hm-section");
  D.heatmaps.forEach(function (h, i) {
    var div = document.createElement("div");
    div.className = "plot heatmap";
    div.id = "heatmap" + i;
    hmBox.appendChild(div);
    var z = h.z.map(function (row) {
      return row.map(function (v) { return v === null ? null : (h.zlog ? Math.log10(v) : v); });
    });
    var custom = h.z.map(function (row, r) {
      return row.map(function (v, c) { return [fmt(v), h.settings[r][c], h.diverged[r][c]]; });
    });
    drawn.push(Plotly.newPlot(div, [{ type: "heatmap", x: h.xlabels, y: h.ylabels, z: z,
      customdata: custom, colorscale: "Viridis", reversescale: lower, hoverongaps: false,
      colorbar: { title: { text: (h.zlog ? "log10 " : "") + D.metric_label }, thickness: 12 },
      hovertemplate: h.x + " %{x}<br>" + h.y + " %{y}<br>mean " + D.metric_label +
        " %{customdata[0]}<br>%{customdata[1]} settings, %{customdata[2]} without a number<extra></extra>" }],
      layout({ title: { text: h.x + " x " + h.y + " (blank: no finished setting)", font: { size: 13 },
                        x: 0.02, xanchor: "left" },
        height: 420, xaxis: { title: { text: h.x }, type: "category" },
        yaxis: { title: { text: h.y }, type: "category" } }), CONFIG));
  });

  // ---- schedules: Hyperband's brackets, PBT's lineage -----------------------------------------
  var COLORS = ["#4c72b0", "#55a868", "#8172b2", "#ccb974", "#64b5cd", "#dd8452"];
  function positiveAll(arrays) {
    return arrays.every(function (a) {
      return !a || a.every(function (v) { return v === null || v > 0; });
    });
  }
  R.brackets = 0; R.lineages = 0; R.jumps = 0; R.schedules = 0;
  var hb = D.hyperband;
  if (hb) {
    var box = document.getElementById("brackets");
    hb.brackets.forEach(function (b) {
      var div = document.createElement("div");
      div.className = "plot bracket";
      box.appendChild(div);
      var traces = [
        { x: b.stopped.x, y: b.stopped.y, name: "stopped at a rung", line: { color: "#aaa", width: 1 } },
        { x: b.survived.x, y: b.survived.y, name: "reached the last epoch", line: { color: "#4c72b0", width: 1.4 } }]
        .filter(function (t) { return t.x.length > 0; });
      if (b.best) traces.push({ x: hb.epoch, y: b.best, name: "best: run " + b.best_run,
        line: { color: "#000", width: 2.4 } });
      traces.forEach(function (t) { t.type = "scatter"; t.mode = "lines"; t.connectgaps = false; t.hoverinfo = "x+y+name"; });
      var shapes = b.stages.slice(0, -1).map(function (st) {
        return { type: "line", xref: "x", yref: "paper", x0: st[0], x1: st[0], y0: 0, y1: 1,
                 line: { color: "#c44e52", width: 1, dash: "dash" } };
      });
      var title = "bracket " + b.bracket + ": " + b.stages.map(function (st) { return st[1]; }).join(" → ") +
        " runs at epochs " + b.stages.map(function (st) { return st[0]; }).join(", ") +
        (b.shown < b.runs ? " (" + b.shown + " of " + b.runs + " shown)" : "");
      drawn.push(Plotly.newPlot(div, traces, layout({ title: { text: title, font: { size: 13 } },
        height: 320, shapes: shapes, xaxis: { title: { text: "epoch" } },
        yaxis: { title: { text: hb.metric.replace("_", " ") },
                 type: positiveAll([b.stopped.y, b.survived.y, b.best]) ? "log" : "linear" },
        hovermode: "closest" }), CONFIG));
      R.brackets += 1;
    });
  }
  var pbt = D.pbt;
  if (pbt) {
    var lt = [{ x: pbt.members.x, y: pbt.members.y, name: "members", hoverinfo: "skip",
                line: { color: "#bbb", width: 0.8 } },
              { x: pbt.jumps.x, y: pbt.jumps.y, name: "exploit: child → parent",
                line: { color: "#c44e52", width: 1.2 }, hoverinfo: "x+y" }];
    pbt.lineages.forEach(function (l, i) {
      lt.push({ x: pbt.epoch, y: l.y, text: l.text, name: "run " + l.run + " (#" + (i + 1) + ")",
        line: { color: COLORS[i % COLORS.length], width: i === 0 ? 2.6 : 1.6 },
        hovertemplate: "run " + l.run + ", epoch %{x}: %{y:.4g}<br>%{text}<extra></extra>" });
    });
    lt.forEach(function (t) { t.type = "scatter"; t.mode = "lines"; t.connectgaps = false; });
    R.lineages = pbt.lineages.length;
    R.jumps = pbt.jumps_shown;
    drawn.push(Plotly.newPlot("lineage", lt, layout({
      title: { text: "members over epochs, exploits and the best lineages", font: { size: 13 } },
      height: 420, hovermode: "closest", xaxis: { title: { text: "epoch" } },
      yaxis: { title: { text: pbt.metric.replace("_", " ") },
               type: positiveAll([pbt.members.y]) ? "log" : "linear" } }), CONFIG));
    var sbox = document.getElementById("schedules");
    pbt.schedules.forEach(function (sc) {
      var div = document.createElement("div");
      div.className = "plot schedule";
      sbox.appendChild(div);
      var traces = sc.ys.map(function (y, i) {
        return { type: "scatter", mode: "lines", x: sc.x, y: y, name: "run " + pbt.lineages[i].run,
          line: { color: COLORS[i % COLORS.length], width: i === 0 ? 2.6 : 1.6 } };
      });
      drawn.push(Plotly.newPlot(div, traces, layout({
        title: { text: sc.param + " of the best lineages over epochs", font: { size: 13 } },
        height: 260, xaxis: { title: { text: "epoch" } },
        yaxis: { title: { text: sc.param }, type: sc.log ? "log" : "linear" } }), CONFIG));
      R.schedules += 1;
    });
  }

  // ---- controls ------------------------------------------------------------------------------
  var slider = document.getElementById("bestk");
  function bestK() {
    var k = +slider.value;
    document.getElementById("bestk-label").textContent = k + "%";
    if (colorDim < 0 || !D.quantiles) return;
    var d = pc.dims[colorDim], t = D.quantiles[k - 1];
    if (d.log) t = Math.log10(t);
    var cr = k >= 100 ? null : (lower ? [d.range[0], t] : [t, d.range[1]]);
    var update = {};
    update["dimensions[" + colorDim + "].constraintrange"] = [cr];
    Plotly.restyle(pcDiv, update, [0]);
  }
  slider.addEventListener("input", bestK);
  if (colorDim < 0 || !D.quantiles) slider.disabled = true;
  document.getElementById("reset").addEventListener("click", function () {
    slider.value = 100;
    document.getElementById("bestk-label").textContent = "100%";
    if (!pcDiv.data) return;
    var update = {};
    pcDiv.data[0].dimensions.forEach(function (d, i) {
      update["dimensions[" + i + "].constraintrange"] = [null];
    });
    Plotly.restyle(pcDiv, update, [0]);
  });

  Promise.all(drawn).then(function () {
    if (pcDiv.on) pcDiv.on("plotly_restyle", updateSelection);
    return drawCurves(null);
  }).then(function () {
    if (pcDiv.data) updateSelection();
    R.ready = true;
  });
})();
