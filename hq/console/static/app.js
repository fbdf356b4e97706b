// tobira console: the live event feed. Everything else works without
// JavaScript. Rows are built with textContent (never innerHTML), and the
// table keeps at most data-max rows so a busy feed cannot freeze the page.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("live");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var max = parseInt(table.dataset.max, 10) || 200;
  var status = document.getElementById("live-status");
  var pending = [];
  var cols = ["time", "site", "device", "seq", "door", "result", "reason", "credential"];
  function flush() {
    var rows = pending.splice(0, pending.length).slice(-max);
    for (var i = 0; i < rows.length; i++) {
      var ev = rows[i], tr = document.createElement("tr");
      if (ev.denied) { tr.className = "denied"; }
      for (var c = 0; c < cols.length; c++) {
        var td = document.createElement("td");
        td.textContent = String(ev[cols[c]] === undefined ? "" : ev[cols[c]]);
        tr.appendChild(td);
      }
      body.insertBefore(tr, body.firstChild);
    }
    while (body.rows.length > max) { body.deleteRow(body.rows.length - 1); }
  }
  var scheduled = false;
  var src = new EventSource(table.dataset.src);
  src.onopen = function () { status.textContent = status.dataset.connected; };
  src.onerror = function () { status.textContent = status.dataset.lost; };
  src.onmessage = function (m) {
    pending.push(JSON.parse(m.data));
    if (!scheduled) { scheduled = true; requestAnimationFrame(function () { scheduled = false; flush(); }); }
  };
  src.addEventListener("dropped", function (m) { status.textContent = status.dataset.dropped.replace("%d", m.data); });
});
