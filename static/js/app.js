// Copy buttons and the modal's Cancel. Everything else works without JavaScript.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    const text = source ? source.textContent.trim() : "";
    const done = () => {
      const label = copy.textContent;
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => selectText(source));
    } else {
      selectText(source);
    }
    return;
  }
  if (event.target.closest("[data-close-modal]")) {
    document.getElementById("modal").innerHTML = "";
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    const modal = document.getElementById("modal");
    if (modal && modal.innerHTML.trim()) modal.innerHTML = "";
  }
});

// Focus the first field of a modal when it opens, so keyboard users land in it.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target.id === "modal") {
    const first = event.detail.target.querySelector(
      "input:not([type=hidden]), select, textarea, button",
    );
    if (first) first.focus();
  }
});

function selectText(node) {
  if (!node) return;
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}
