// Spinnakr's dashboard client: D3 charts fed by the query engine, kept live over one WebSocket.
import "./dashboard.css";
// selection.transition() is a side effect of d3-transition, which d3 marks side-effect free.
import "d3-transition";
import { Dashboard } from "./dashboard.js";
import { Overview } from "./overview.js";

function boot() {
  const root = document.querySelector("[data-page]");
  if (!root) return;
  if (root.dataset.page === "dashboard") {
    const config = JSON.parse(document.getElementById("dashboard-config").textContent);
    window.spinnakrDashboard = new Dashboard(root, config);
  } else if (root.dataset.page === "overview") {
    window.spinnakrOverview = new Overview(root);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
