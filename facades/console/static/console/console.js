// The console's only script (CSP script-src 'self': no inline code anywhere).
// htmx requests carry the CSRF token from the page's <meta name="csrf-token">.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRFToken"] = meta.getAttribute("content");
  }
});

// Bulk selection on the service-detail page. A cluster's "select all" box ticks its rows (the
// server also treats it as "every instance of the cluster", so the form works without this).
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!(box instanceof HTMLInputElement) || box.getAttribute("form") !== "bulk") {
    return;
  }
  var table = box.closest("table");
  if (!table) {
    return;
  }
  if (box.classList.contains("select-all")) {
    table.querySelectorAll('input[name="selected"]').forEach(function (row) {
      row.checked = box.checked;
    });
  } else if (!box.checked) {
    var all = table.querySelector("input.select-all");
    if (all) {
      all.checked = false;
    }
  }
});

// The instance tables refresh every 2 s by replacing them: while anything is selected the
// refresh waits (and one already under way is dropped), so a selection is never wiped out
// under the user's pointer.
function selectionPending(event) {
  var target = event.detail && event.detail.elt;
  return Boolean(target && target.id === "instances" &&
    target.querySelector('input[form="bulk"]:checked'));
}
document.addEventListener("htmx:beforeRequest", function (event) {
  if (selectionPending(event)) {
    event.preventDefault();
  }
});
document.addEventListener("htmx:beforeSwap", function (event) {
  if (selectionPending(event)) {
    event.detail.shouldSwap = false;
  }
});
