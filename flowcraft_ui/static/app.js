// Live run pages: the server pushes a fresh rendering of the run over server-sent events
// whenever it changes; the stream is closed once the run has a final status.
(function () {
  "use strict";
  var detail = document.getElementById("detail");
  if (!detail || detail.dataset.live !== "yes" || !window.EventSource) return;
  var run = detail.dataset.run;
  var source = new EventSource("/runs/" + encodeURIComponent(run) + "/events");
  var FINAL = { completed: true, failed: true, cancelled: true };
  source.addEventListener("update", function (event) {
    var data = JSON.parse(event.data);
    detail.innerHTML = data.html;
    var node = document.querySelector('#resume-form input[name="node"]');
    if (node && !node.value && data.parked.length === 1) node.value = data.parked[0];
    if (FINAL[data.status]) {
      detail.dataset.live = "no";
      source.close();
    }
  });
  source.addEventListener("gone", function () { source.close(); });
})();
