/* The job page's history, live: the job's events from the board's event
   stream (Server-Sent Events; the browser reconnects with Last-Event-ID). */
(function () {
  'use strict';

  var NOTES = { event: true, log: true, 'var': true };  // shown in the Notes table

  function cell(text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  /* What insights.event_text says of an event on the server. */
  function what(e) {
    return e.kind + (e.stage !== null && e.stage !== undefined ? ' (stage ' + e.stage + ')' : '');
  }

  function when(t) {
    var d = new Date(t * 1000);
    return d.toLocaleTimeString() + ' (live)';
  }

  window.jobserverHistory = function (table) {
    if (!table || !window.EventSource) return;
    var body = table.querySelector('tbody');
    var seen = {};
    body.querySelectorAll('tr[data-cursor]').forEach(function (r) {
      seen[r.getAttribute('data-cursor')] = true;
    });
    var url = '/boards/' + encodeURIComponent(table.getAttribute('data-board')) +
      '/events/stream?key=' + encodeURIComponent(table.getAttribute('data-key')) +
      '&after=' + encodeURIComponent(table.getAttribute('data-after'));
    var source = new EventSource(url);
    source.onmessage = function (m) {
      var e = JSON.parse(m.data);
      if (seen[e.cursor] || NOTES[e.kind]) return;
      seen[e.cursor] = true;
      var empty = body.querySelector('tr.empty');
      if (empty) empty.remove();
      var row = document.createElement('tr');
      row.setAttribute('data-cursor', e.cursor);
      row.className = 'fresh';
      var t = cell(when(e.at), 'time');
      t.setAttribute('data-t', e.at);
      row.appendChild(t);
      row.appendChild(cell(what(e)));
      row.appendChild(cell(e.detail && e.detail.worker ? e.detail.worker : ''));
      body.appendChild(row);
      var changed = document.getElementById('history-changed');
      if (changed) changed.hidden = false;
    };
    window.jobserverHistorySource = source;  // (tests close it)
  };
})();
