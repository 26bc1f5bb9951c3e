// The launch form: show the part of "what to simulate" that is chosen, and the endpoint checks.
const radios = document.querySelectorAll('input[name="source"]');
function showSource() {
  const chosen = document.querySelector('input[name="source"]:checked')?.value || "scenario";
  for (const part of document.querySelectorAll(".source-part")) part.hidden = part.dataset.source !== chosen;
}
radios.forEach((r) => r.addEventListener("change", showSource));
showSource();

const csrf = document.querySelector('input[name="csrfmiddlewaretoken"]').value;
for (const button of document.querySelectorAll("button[data-check-url]")) {
  button.addEventListener("click", async () => {
    const out = document.getElementById(button.getAttribute("aria-describedby"));
    out.className = "check-result";
    out.textContent = "checking…";
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.checkUrl, {method: "POST", headers: {"X-CSRFToken": csrf},
                                                               credentials: "same-origin"});
      const r = await response.json();
      if (!response.ok) throw new Error(r.error?.message || `HTTP ${response.status}`);
      out.classList.add(r.ok ? "ok" : "failed");
      out.textContent = r.ok ? `${r.method} ok${r.latency_ms != null ? ` in ${r.latency_ms} ms` : ""}`
                             : `${r.method} failed: ${r.error}`;
    } catch (err) {
      out.classList.add("failed");
      out.textContent = `check failed: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
}
