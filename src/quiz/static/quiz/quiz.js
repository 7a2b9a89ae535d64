// QUIZ: the favourite star without a page reload, and confirmations before deleting.
// Without script, the same forms post normally; the server answers both ways.
(function () {
  "use strict";
  function csrfToken(form) {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (!form.classList.contains("star-form") || !window.fetch) { return; }
    event.preventDefault();
    var methodField = form.querySelector("input[name=_method]");
    var button = form.querySelector("button.star");
    fetch(form.action, {
      method: methodField.value,
      headers: { "X-CSRFToken": csrfToken(form), "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (data) {
      methodField.value = data.favourite ? "DELETE" : "PUT";
      button.classList.toggle("on", data.favourite);
      button.innerHTML = data.favourite ? "&#9733;" : "&#9734;";
      button.title = data.favourite ? "Remove from favourites" : "Add to favourites";
    }).catch(function () { form.submit(); });
  });
})();
