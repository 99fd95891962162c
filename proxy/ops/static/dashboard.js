// perfics dashboard: refresh the live figures in place every 5 s while the page is visible.
// The page is complete without this script.
"use strict";
(function () {
  const live = document.querySelector("[data-refresh]");
  if (!live) return;
  const url = live.getAttribute("data-refresh");
  const heading = live.querySelector("h2");
  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { headers: { accept: "text/html" } });
      if (!response.ok) return;
      const html = await response.text();
      live.innerHTML = "";
      if (heading) live.appendChild(heading);
      live.insertAdjacentHTML("beforeend", html);
    } catch (error) {
      // The server is restarting or unreachable: keep the figures shown.
    }
  }
  setInterval(refresh, 5000);
})();
