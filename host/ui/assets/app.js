// Stepwise dashboard: the only script. It asks before posting a form marked data-confirm.
// No inline script exists on any page (the Content-Security-Policy forbids it).
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
