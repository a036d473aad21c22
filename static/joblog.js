/* The job page's live output: polls the job's log (text, read on from the
   cursor of the last answer) while its attempt runs, and stops when it ends. */
(function () {
  'use strict';
  var EVERY = 1000;  // ms between two looks while the attempt runs
  var KEEP = 2000000;  // characters the page keeps (the oldest go, with a line saying so)

  function tail(pre) {
    var status = document.getElementById('live-log-status');
    var attempt = pre.getAttribute('data-attempt');
    var cursor = '';
    var hidden = 0;

    function say(text) { if (status) status.textContent = 'attempt ' + attempt + ' · ' + text; }

    function atBottom() { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8; }

    function append(text) {
      var stick = atBottom();  // follow the end unless the reader scrolled up
      pre.appendChild(document.createTextNode(text));
      var all = pre.textContent;
      if (all.length > KEEP) {
        var cut = all.length - KEEP;
        hidden += cut;
        pre.textContent = '[this page dropped ' + hidden.toLocaleString()
          + ' earlier characters: the whole log is at ' + pre.getAttribute('data-url') + ']\n'
          + all.slice(cut);
      }
      if (stick) pre.scrollTop = pre.scrollHeight;
    }

    function poll() {
      var url = pre.getAttribute('data-url') + '?attempt=' + encodeURIComponent(attempt)
        + (cursor ? '&after=' + encodeURIComponent(cursor) : '');
      fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        var running = r.headers.get('X-Jobserver-Attempt-Running') === 'true';
        var more = r.headers.get('X-Jobserver-Log-More') === 'true';
        cursor = r.headers.get('X-Jobserver-Log-Cursor') || cursor;
        return r.text().then(function (text) {
          if (text) append(text);
          if (more) { poll(); return; }
          if (running) {
            say('running, updated live');
            setTimeout(poll, EVERY);
          } else {
            say('ended');
          }
        });
      }).catch(function () {
        say('cannot reach the server, retrying…');
        setTimeout(poll, 5 * EVERY);
      });
    }
    poll();
  }

  var pre = document.getElementById('live-log');
  if (pre) tail(pre);
})();
