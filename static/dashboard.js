/* The board page: live KPIs, funnel, throughput chart, workers, problems,
   and a server-paginated job table.  Everything user-supplied goes in with
   textContent (never innerHTML). */
(function () {
  'use strict';
  var J = window.jobserver;
  var el = J.el;

  function cell(tr, text, cls) { var td = el('td', text, cls); tr.appendChild(td); return td; }

  function jobLink(board, key) {
    var a = el('a', key);
    a.href = '/boards/' + encodeURIComponent(board) + '/jobs/' + encodeURIComponent(key);
    return a;
  }

  function ago(t) {
    if (!t) return '';
    var s = Math.max(0, Math.round(Date.now() / 1000 - t));
    return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago'
      : Math.round(s / 3600) + ' h ago';
  }

  function setText(id, v) { var e = document.getElementById(id); if (e) e.textContent = v; }

  function renderKpis(d) {
    setText('progress', J.pct(d.progress));
    document.getElementById('progress-bar').style.width = d.progress + '%';
    setText('done', d.done); setText('total', d.total);
    setText('per-minute', d.per_minute);
    setText('eta', d.stuck ? 'stuck' : d.health === 'done' ? 'done'
      : d.health === 'failed' ? 'nothing left'
      : (d.eta_at_most && d.eta_seconds !== null ? '≤ ' : '') + J.fmtEta(d.eta_seconds));
    var eta = document.getElementById('eta');
    if (eta) eta.title = d.stuck ? 'the jobs left are blocked behind failed or cancelled jobs'
      : d.eta_at_most ? 'some blocked jobs wait for failed or cancelled jobs: the run may end sooner, leaving them blocked' : '';
    setText('running', d.running); setText('waiting', d.waiting); setText('blocked', d.blocked);
    setText('max-running', d.max_running === null || d.max_running === undefined ? '' : ' of ' + d.max_running + ' max');
    setText('failed', d.failed); setText('flagged', d.flagged);
    setText('alive', d.alive_workers); setText('lost', d.lost_workers);
    var h = document.getElementById('health');
    h.textContent = d.health; h.setAttribute('data-health', d.health);
    setText('health-reason', d.health_reason);
    document.querySelectorAll('.kpi.bad-if').forEach(function (k) {
      k.classList.toggle('bad', Number(k.querySelector('.value').textContent) > 0);
    });
    document.querySelector('.lost-count').classList.toggle('bad', d.lost_workers > 0);
  }

  function renderFunnel(d) {
    var body = document.querySelector('#funnel tbody');
    body.textContent = '';
    var max = Math.max.apply(null, d.stages.map(function (s) {
      return s.count + (s.blocked || 0) + s.failed + s.cancelled; }).concat([1]));
    d.stages.forEach(function (s) {
      var tr = el('tr', undefined, s.kind);
      tr.setAttribute('data-stage', s.stage);
      var label = cell(tr, s.stage + ' ');
      // the name, and the kind where the name does not say it already
      var words = s.name ? (s.name.toLowerCase() === s.kind ? s.name : s.name + ' · ' + s.kind) : s.kind;
      label.appendChild(el('small', words));
      var count = cell(tr, s.count, 'count');
      if (s.blocked) count.appendChild(el('span', s.blocked + ' blocked', 'funnel-extra blocked'));
      if (s.failed) count.appendChild(el('span', s.failed + ' failed', 'funnel-extra failed'));
      if (s.cancelled) count.appendChild(el('span', s.cancelled + ' cancelled', 'funnel-extra cancelled'));
      var bc = cell(tr, undefined, 'barcell');
      var bar = el('div', undefined, 'bar'); var fill = el('div');
      fill.style.width = (100 * s.count / max) + '%'; bar.appendChild(fill);
      if (s.blocked) {
        var held = el('div', undefined, 'blocked-part'); held.style.width = (100 * s.blocked / max) + '%';
        bar.appendChild(held);
      }
      if (s.failed) {
        var bad = el('div', undefined, 'failed-part'); bad.style.width = (100 * s.failed / max) + '%';
        bar.appendChild(bad);
      }
      bc.appendChild(bar);
      cell(tr, s.lifetime ? s.lifetime + ' min' : '∞');
      body.appendChild(tr);
    });
  }

  var chart = null;
  var COLORS = ['#2e6bd8', '#1f9d55', '#d97706', '#9333ea', '#0891b2', '#dc2626'];
  function renderChart(d) {
    var tp = d.throughput;
    var labels = tp.minutes.map(function (m) {
      return new Date(m * 60000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    });
    var names = {};
    d.stages.forEach(function (s) { names[s.stage] = s.name; });
    var datasets = Object.keys(tp.stages).sort().map(function (stage, i) {
      return { label: 'into stage ' + stage + (names[stage] ? ' (' + names[stage] + ')' : ''),
               data: tp.stages[stage], borderColor: COLORS[i % COLORS.length],
               backgroundColor: COLORS[i % COLORS.length], tension: 0.25, pointRadius: 0,
               borderWidth: 2 };
    });
    if (!window.Chart) return;
    if (!chart) {
      chart = new window.Chart(document.getElementById('chart'), {
        type: 'line', data: { labels: labels, datasets: datasets },
        options: { animation: false, responsive: true, maintainAspectRatio: false,
                   interaction: { mode: 'index', intersect: false },
                   scales: { y: { beginAtZero: true, title: { display: true, text: 'jobs / min' } },
                             x: { ticks: { maxTicksLimit: 8 } } },
                   plugins: { legend: { position: 'bottom' } } } });
    } else {
      chart.data.labels = labels;
      chart.data.datasets = datasets;
      chart.update('none');
    }
  }

  function renderWorkers(d) {
    var body = document.querySelector('#workers tbody');
    body.textContent = '';
    if (!d.workers.length) {
      var tr = el('tr'); var td = cell(tr, 'no API workers yet'); td.colSpan = 8; body.appendChild(tr);
    }
    d.workers.forEach(function (w) {
      var tr = el('tr', undefined, w.state);
      tr.setAttribute('data-worker', w.name);
      cell(tr, w.name); cell(tr, w.host || ''); cell(tr, w.allocation || '', 'allocation');
      var st = cell(tr); var b = el('span', w.state, 'badge');
      b.setAttribute('data-health', w.state === 'lost' ? 'attention' : (w.state === 'alive' ? 'healthy' : 'idle')); st.appendChild(b);
      cell(tr, w.running);
      var r = w.resources || {};
      cell(tr, r.cpu_percent !== undefined ? r.cpu_percent + '%' : '');
      cell(tr, J.fmtBytes(r.worker_rss_bytes));
      cell(tr, ago(w.last_seen));
      body.appendChild(tr);
    });
  }

  var ALLOCATION_LOOKS = { pending: 'stalled', running: 'running' };

  /* The pools card: hidden until the board has an allocation (a pool may
     start after the page was opened). */
  function renderPools(d) {
    var card = document.getElementById('pools');
    var p = d.pools;
    card.hidden = !p;
    if (!p) return;
    setText('pools-pending', p.pending); setText('pools-running', p.running);
    setText('pools-ended', p.ended);
    setText('pools-shown', p.total > p.allocations.length
      ? 'the ' + p.allocations.length + ' most recent of ' + p.total : '');
    var body = document.querySelector('#allocations tbody');
    body.textContent = '';
    p.allocations.forEach(function (a) {
      var tr = el('tr', undefined, 'alloc-' + a.state + (a.lost_jobs ? ' lost-jobs' : ''));
      tr.setAttribute('data-allocation', a.id);
      cell(tr, a.id);
      var pool = cell(tr, (a.pool || '') + ' ');
      if (a.scheduler) pool.appendChild(el('small', a.scheduler));
      var st = cell(tr);
      var b = el('span', a.state, 'badge');
      b.setAttribute('data-health', ALLOCATION_LOOKS[a.state] || 'idle');
      st.appendChild(b);
      if (a.reason) { st.appendChild(document.createTextNode(' ')); st.appendChild(el('small', a.reason, 'reason')); }
      cell(tr, (a.nodes || '?') + ' × ' + (a.workers_per_node || '?'));
      cell(tr, a.workers); cell(tr, a.running);
      cell(tr, a.lost_text || '0', 'lost-cell');
      [a.submitted_at, a.started_at, a.ended_at].forEach(function (t) {
        J.fillClock(cell(tr, undefined, 'clock'), t);
      });
      // measured here, so a running allocation's time is right at every update
      var run = cell(tr, a.started_at === null ? ''
        : J.fmtDuration((a.ended_at || Date.now() / 1000) - a.started_at));
      if (a.time_limit_s) {
        run.appendChild(document.createTextNode(' '));
        run.appendChild(el('small', (a.started_at === null ? 'limit ' : 'of ') + J.fmtDuration(a.time_limit_s)));
      }
      body.appendChild(tr);
    });
  }

  function renderProblems(board, d) {
    var body = document.querySelector('#flagged-jobs tbody');
    body.textContent = '';
    if (!d.flagged_jobs.length) { var n = el('tr'); var c = cell(n, 'none'); c.colSpan = 4; body.appendChild(n); }
    d.flagged_jobs.forEach(function (j) {
      var tr = el('tr', undefined, 'flagged');
      var td = cell(tr); td.appendChild(jobLink(board, j.id));
      cell(tr, j.stage); cell(tr, ago(j.entered_at)); cell(tr, j.attempts);
      body.appendChild(tr);
    });
    body = document.querySelector('#failed-jobs tbody');
    body.textContent = '';
    if (!d.failed_jobs.length) { var m = el('tr'); var c2 = cell(m, 'none'); c2.colSpan = 3; body.appendChild(m); }
    d.failed_jobs.forEach(function (j) {
      var tr = el('tr', undefined, 'failed');
      var td = cell(tr); td.appendChild(jobLink(board, j.key));
      cell(tr, j.error, 'error-text'); cell(tr, j.attempts);
      body.appendChild(tr);
    });
  }

  function render(board, d) {
    renderKpis(d); renderFunnel(d); renderChart(d); renderPools(d); renderWorkers(d);
    renderProblems(board, d);
  }

  window.jobserverBoard = function () {
    var board = document.getElementById('board').getAttribute('data-board');
    var form = document.getElementById('filters');
    var params = new URLSearchParams(window.location.search);
    var page = Number(params.get('page') || 1);
    var pending = false, again = false;
    var hasNext = !document.getElementById('next').disabled;  // as the server rendered it
    render(board, JSON.parse(document.getElementById('initial').textContent));
    J.fillStatic();

    function query() {
      var q = new URLSearchParams(new FormData(form));
      q.set('page', page);
      return q;
    }
    function loadTable() {
      if (pending) { again = true; return; }
      pending = true;
      var q = query();
      fetch('/boards/' + encodeURIComponent(board) + '/jobs.json?' + q.toString())
        .then(function (r) { return r.json(); })
        .then(function (t) {
          hasNext = t.has_next;
          var body = document.querySelector('#jobs tbody');
          body.textContent = '';
          t.rows.forEach(function (j) {
            var tr = el('tr', undefined, (j.flagged ? 'flagged ' : '') + j.state);
            var td = cell(tr); td.appendChild(jobLink(board, j.key));
            cell(tr, j.stage); cell(tr, j.state);
            // attempts spent at the current stage: none for a done or cancelled job
            cell(tr, ['waiting', 'running', 'failed'].indexOf(j.state) >= 0 ? j.attempts : '');
            var t2 = cell(tr, J.fmtTime(j.entered_at), 'time'); t2.setAttribute('data-t', j.entered_at);
            cell(tr, j.error || j.file || '');
            body.appendChild(tr);
          });
          if (!t.rows.length) { var e = el('tr'); var c = cell(e, 'no job matches'); c.colSpan = 6; body.appendChild(e); }
          setText('page', 'page ' + t.page);
          document.getElementById('prev').disabled = t.page <= 1;
          document.getElementById('next').disabled = !t.has_next;
          history.replaceState(null, '', '?' + q.toString());
        })
        .finally(function () { pending = false; if (again) { again = false; loadTable(); } });
    }
    form.addEventListener('change', function () { page = 1; loadTable(); });
    form.addEventListener('input', function (ev) { if (ev.target.name === 'key') { page = 1; loadTable(); } });
    form.addEventListener('submit', function (ev) { ev.preventDefault(); });
    document.getElementById('prev').addEventListener('click', function () { if (page > 1) { page--; loadTable(); } });
    document.getElementById('next').addEventListener('click', function () { if (hasNext) { page++; loadTable(); } });
    loadTable();

    var socket = J.connect(function (s) { s.emit('join', { board: board }); });
    socket.on('dashboard', function (d) {
      render(board, d);
      loadTable();
      document.body.setAttribute('data-updates',
        String(1 + parseInt(document.body.getAttribute('data-updates') || '0', 10)));
    });
    setInterval(function () { J.fillStatic(); }, 5000);
  };

  window.jobserverLifetimes = function (board) {
    var status = document.getElementById('conn');
    if (status) status.remove();
    var form = document.getElementById('stages-form');
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var token = document.getElementById('token').value;
      var rows = Array.prototype.slice.call(form.querySelectorAll('tr[data-stage]'));
      var saved = document.getElementById('saved');
      saved.textContent = 'saving…';
      var headers = { 'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token };
      var api = '/api/v1/boards/' + encodeURIComponent(board);
      function check(r) {
        if (!r.ok) return r.json().then(function (e) { throw new Error(e.message); });
      }
      var cap = form.elements['max_running'].value.trim();
      // the board's settings first: a refused value stops before the stages change
      fetch(api, { method: 'PATCH', headers: headers,
                   body: JSON.stringify({ max_running: cap === '' ? null : Number(cap),
                                          max_attempts: Number(form.elements['max_attempts'].value) }) })
        .then(check)
        .then(function () {
          return Promise.all(rows.map(function (tr) {
            var s = tr.getAttribute('data-stage');
            return fetch(api + '/stages/' + s, {
              method: 'PUT', headers: headers,
              body: JSON.stringify({ name: form.elements['name-' + s].value,
                                     lifetime: Number(form.elements['lifetime-' + s].value) })
            }).then(check);
          }));
        })
        .then(function () { saved.textContent = 'saved'; },
              function (e) { saved.textContent = 'not saved: ' + e.message; });
    });
  };
})();
