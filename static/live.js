/* Live updates for the jobserver pages (Socket.IO, coalesced on the server). */
(function () {
  'use strict';

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  /* One decimal, exactly as the server's `pct` template filter prints it. */
  function pct(x) { return Number(x || 0).toFixed(1); }

  function fmtTime(t) {
    if (!t) return '';
    var d = new Date(t * 1000);
    var ago = Math.max(0, Math.round(Date.now() / 1000 - t));
    var rel = ago < 60 ? ago + ' s ago' : ago < 3600 ? Math.round(ago / 60) + ' min ago'
      : Math.round(ago / 3600) + ' h ago';
    return d.toLocaleTimeString() + ' (' + rel + ')';
  }

  function fillTimes(root) {
    (root || document).querySelectorAll('.time[data-t]').forEach(function (c) {
      c.textContent = fmtTime(parseFloat(c.getAttribute('data-t')));
    });
  }

  function connect(onConnect) {
    var status = document.getElementById('conn');
    var socket = io({ reconnectionDelayMax: 5000 });
    function show(state, text) {
      if (!status) return;
      status.setAttribute('data-state', state);
      status.textContent = text;
    }
    socket.on('connect', function () {
      show('live', 'live (' + socket.io.engine.transport.name + ')');
      socket.io.engine.on('upgrade', function (t) { show('live', 'live (' + t.name + ')'); });
      onConnect(socket);
    });
    socket.on('disconnect', function () { show('down', 'disconnected, retrying…'); });
    socket.on('connect_error', function () { show('down', 'disconnected, retrying…'); });
    return socket;
  }

  function jobRow(j) {
    var tr = el('tr', undefined, j.flagged ? 'flagged' : '');
    tr.appendChild(el('td', j.id));
    tr.appendChild(el('td', j.stage));
    tr.appendChild(el('td', j.file || ''));
    var t = el('td', fmtTime(j.entered_at), 'time');
    t.setAttribute('data-t', j.entered_at);
    tr.appendChild(t);
    tr.appendChild(el('td', j.state));
    return tr;
  }

  function renderSummary(s) {
    document.getElementById('progress').textContent = pct(s.progress);
    document.getElementById('progress-bar').style.width = s.progress + '%';
    document.getElementById('done').textContent = s.done;
    document.getElementById('total').textContent = s.total;
    document.getElementById('failed').textContent = s.failed;
    var body = document.querySelector('#stages tbody');
    body.textContent = '';
    s.stages.forEach(function (st) {
      var tr = el('tr', undefined, st.working ? 'working' : 'waiting');
      tr.setAttribute('data-stage', st.stage);
      tr.appendChild(el('td', st.stage + (st.working ? ' (working)' : '')));
      tr.appendChild(el('td', st.count, 'count'));
      var bc = el('td', undefined, 'barcell');
      var bar = el('div', undefined, 'bar');
      var fill = el('div');
      fill.style.width = (s.total ? 100 * st.count / s.total : 0) + '%';
      bar.appendChild(fill); bc.appendChild(bar); tr.appendChild(bc);
      tr.appendChild(el('td', st.lifetime ? st.lifetime : '∞'));
      body.appendChild(tr);
    });
    var fl = document.querySelector('#flagged tbody');
    fl.textContent = '';
    if (!s.flagged.length) {
      var none = el('tr', undefined, 'none');
      var td = el('td', 'none'); td.colSpan = 5; none.appendChild(td); fl.appendChild(none);
    }
    s.flagged.forEach(function (j) {
      var tr = el('tr');
      tr.appendChild(el('td', j.id));
      tr.appendChild(el('td', j.stage));
      tr.appendChild(el('td', j.file || ''));
      var t = el('td', fmtTime(j.entered_at), 'time'); t.setAttribute('data-t', j.entered_at);
      tr.appendChild(t);
      tr.appendChild(el('td', j.attempts));
      fl.appendChild(tr);
    });
  }

  window.jobserverJobList = function () {
    var data = document.getElementById('jobix-data');
    var jobix = data.getAttribute('data-jobix');
    var page = data.getAttribute('data-page');
    var pending = false;
    fillTimes();
    function refreshRows() {
      if (pending) return;
      pending = true;
      fetch('/get/rows?jobix=' + encodeURIComponent(jobix) + '&page=' + encodeURIComponent(page))
        .then(function (r) { return r.json(); })
        .then(function (t) {
          var body = document.querySelector('#jobs tbody');
          body.textContent = '';
          t.rows.forEach(function (j) { body.appendChild(jobRow(j)); });
        })
        .finally(function () { pending = false; });
    }
    var socket = connect(function (s) { s.emit('join', { jobix: jobix }); });
    socket.on('board', function (summary) {
      renderSummary(summary);
      refreshRows();
      document.body.setAttribute('data-updates',
        String(1 + parseInt(document.body.getAttribute('data-updates') || '0', 10)));
    });
    setInterval(fillTimes, 5000);
  };

  function fmtEta(sec) {
    if (sec === null || sec === undefined || sec === '') return '–';
    sec = Number(sec);
    if (sec < 90) return Math.round(sec) + ' s';
    if (sec < 5400) return Math.round(sec / 60) + ' min';
    if (sec < 172800) return (sec / 3600).toFixed(1) + ' h';
    return (sec / 86400).toFixed(1) + ' days';
  }

  function fmtBytes(b) {
    if (b === null || b === undefined || b === '') return '';
    b = Number(b);
    var units = ['B', 'kB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + ' ' + units[i];
  }

  /* A time of day in a narrow column (the pools table): the date and how
     long ago in its tooltip. */
  function fillClock(c, t) {
    t = parseFloat(t);
    if (!t) { c.textContent = ''; c.removeAttribute('title'); return; }
    var d = new Date(t * 1000);
    c.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit',
                                               hour12: false });
    c.title = d.toLocaleString() + ' (' + fmtTime(t).replace(/^.*\(/, '');
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || sec === '') return '';
    var s = Math.max(0, Math.round(Number(sec)));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min' + (s % 60 ? ' ' + s % 60 + ' s' : '');
    var m = Math.floor(s % 3600 / 60);
    return Math.floor(s / 3600) + ' h' + (m ? ' ' + m + ' min' : '');
  }

  function fillStatic(root) {
    fillTimes(root);
    (root || document).querySelectorAll('.clock[data-t]').forEach(function (c) {
      fillClock(c, c.getAttribute('data-t'));
    });
    (root || document).querySelectorAll('.bytes[data-b]').forEach(function (c) {
      c.textContent = fmtBytes(c.getAttribute('data-b'));
    });
    (root || document).querySelectorAll('.eta[data-s]').forEach(function (c) {
      c.textContent = fmtEta(c.getAttribute('data-s'));
    });
  }

  window.jobserver = { el: el, pct: pct, fmtTime: fmtTime, fmtEta: fmtEta, fmtBytes: fmtBytes,
                       fmtDuration: fmtDuration, fillClock: fillClock,
                       connect: connect, fillStatic: fillStatic };

  window.jobserverStatic = function () {
    var status = document.getElementById('conn');
    if (status) status.remove();
    fillStatic();
  };

  window.jobserverHome = function () {
    fillStatic();
    var socket = connect(function (s) { s.emit('join', { home: true }); });
    // Each message carries the rows of the boards that changed (all of
    // them right after joining): replace those rows, add new boards.
    socket.on('boards', function (boards) {
      var body = document.querySelector('#boards tbody');
      boards.forEach(function (b) {
        var tr = el('tr');
        tr.setAttribute('data-board', b.name);
        tr.setAttribute('data-id', b.id);
        var link = el('a', b.name);
        link.href = '/boards/' + encodeURIComponent(b.name);
        var td = el('td'); td.appendChild(link); tr.appendChild(td);
        var badge = el('span', b.health, 'badge'); badge.setAttribute('data-health', b.health);
        td = el('td'); td.appendChild(badge); tr.appendChild(td);
        var pc = el('td');
        var bar = el('div', undefined, 'bar'); var fill = el('div');
        fill.style.width = b.progress + '%'; bar.appendChild(fill); pc.appendChild(bar);
        pc.appendChild(document.createTextNode(' ' + pct(b.progress) + '% '));
        pc.appendChild(el('small', '(' + b.done + '/' + b.total
                          + (b.blocked ? ' · ' + b.blocked + ' blocked' : '') + ')'));
        tr.appendChild(pc);
        tr.appendChild(el('td', b.per_minute + '/min'));
        tr.appendChild(el('td', fmtEta(b.eta_seconds), 'eta'));
        tr.appendChild(el('td', b.running));
        tr.appendChild(el('td', b.flagged));
        tr.appendChild(el('td', b.failed));
        tr.appendChild(el('td', b.lost_workers));
        var old = body.querySelector('tr[data-board="' + CSS.escape(b.name) + '"]');
        if (old) { body.replaceChild(tr, old); return; }
        var empty = body.querySelector('tr:not([data-board])');  // "no job lists yet"
        if (empty) empty.remove();
        body.appendChild(tr);
      });
    });
    socket.on('boards_gone', function (ids) {
      ids.forEach(function (id) {
        var row = document.querySelector('#boards tr[data-id="' + Number(id) + '"]');
        if (row) row.remove();
      });
    });
  };
})();
