// The annotation page's only script: order by drag (numbers follow), order by number (the list
// follows), and the listening time each clip needs before the form can be sent.
(function () {
  "use strict";
  var form = document.getElementById("ranking");
  if (!form) { return; }
  var list = document.getElementById("candidates");
  var submit = document.getElementById("submit");
  var minListen = parseFloat(form.dataset.minListen) || 0;
  var dragged = null;

  function items() { return Array.prototype.slice.call(list.querySelectorAll("li.candidate")); }
  function input(li) { return li.querySelector("input[type=number]"); }

  function renumber() {
    items().forEach(function (li, i) { input(li).value = String(i + 1); });
  }

  function sortByNumbers() {
    var lis = items();
    lis.sort(function (a, b) {
      return (parseInt(input(a).value, 10) || 99) - (parseInt(input(b).value, 10) || 99);
    });
    lis.forEach(function (li) { list.appendChild(li); });
  }

  items().forEach(function (li) {
    li.addEventListener("dragstart", function (e) {
      dragged = li;
      li.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", li.dataset.k);
    });
    li.addEventListener("dragend", function () { li.classList.remove("dragging"); dragged = null; });
    li.addEventListener("dragover", function (e) { e.preventDefault(); });
    li.addEventListener("drop", function (e) {
      e.preventDefault();
      if (!dragged || dragged === li) { return; }
      var lis = items();
      var after = lis.indexOf(dragged) < lis.indexOf(li);
      list.insertBefore(dragged, after ? li.nextSibling : li);
      renumber();
    });
    input(li).addEventListener("change", sortByNumbers);
  });

  var audios = Array.prototype.slice.call(form.querySelectorAll("audio"));
  var played = {};
  var complete = {};

  function needed(audio) {
    var d = audio.duration;
    // A clip shorter than the minimum counts once it has been heard to its end.
    return isFinite(d) && d > 0 ? Math.min(minListen, Math.max(d - 0.5, 0)) : minListen;
  }

  function update() {
    var ready = true;
    audios.forEach(function (audio) {
      var k = audio.dataset.k;
      var secs = played[k] || 0;
      form.querySelector("input[name=listened-" + k + "]").value = secs.toFixed(1);
      var ok = complete[k] || secs >= needed(audio);
      var note = form.querySelector(".listened[data-k='" + k + "']");
      if (minListen > 0) {
        note.textContent = ok ? "listened" : "listen " + Math.max(0, needed(audio) - secs).toFixed(1) + " s more";
        note.classList.toggle("ok", ok);
      }
      if (!ok) { ready = false; }
    });
    if (minListen > 0) { submit.disabled = !ready; }
  }

  audios.forEach(function (audio) {
    var k = audio.dataset.k;
    var last = null;
    audio.addEventListener("play", function () { last = audio.currentTime; });
    audio.addEventListener("timeupdate", function () {
      if (audio.paused || last === null) { last = audio.currentTime; return; }
      var delta = audio.currentTime - last;
      last = audio.currentTime;
      // Seeking jumps; only time actually played counts.
      if (delta > 0 && delta < 1.5) { played[k] = (played[k] || 0) + delta; update(); }
    });
    audio.addEventListener("ended", function () { complete[k] = true; update(); });
    audio.addEventListener("loadedmetadata", update);
  });
  update();
})();
