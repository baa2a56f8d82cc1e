// The only script of the pages: filters that apply as soon as a choice changes.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("form.filters select[data-autosubmit]")) {
    el.addEventListener("change", () => el.form.requestSubmit());
  }
});
