// AniPortrait Kit web extension: tells the user which models our nodes point to are missing (a badge on the node,
// and "Extensions > AniPortrait > model status" listing the files), using the pack's GET /aniportrait/models route,
// and shows the warnings a running node raises (the "aniportrait.warning" message) as toasts.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { fetchPackJson } from "./apk_fetch.js";

const NODE_PREFIX = "APK_";
const DOWNLOAD_HINT = "run scripts/download_models.py in the pack's folder with the Python that runs ComfyUI " +
  "(a node's missing-model error prints the exact command)";
const WARNING_EVENT = "aniportrait.warning";

// last answer of GET /aniportrait/models: {models_dir (a label), cached: [...], missing: {name: path in the folder}}
let modelStatus = null;
// warnings shown so far (the browser tests read them)
const shownWarnings = [];

// Missing models among those the node's widgets select (the route names one missing file per model). A widget
// value is a path under the models folder: a file ("audio2mesh.pt") or a folder model ("wav2vec2-base-960h").
function missingModelsOfNode(node, status) {
  if (!status?.missing || !node.widgets) return [];
  const selected = node.widgets.map((w) => w.value).filter((v) => typeof v === "string" && v);
  return Object.values(status.missing).filter((rel) => selected.some((v) => rel === v || rel.startsWith(v + "/")));
}

async function refreshModelStatus() {
  modelStatus = await fetchPackJson("/aniportrait/models", "model status");
  app.graph?.setDirtyCanvas(true, true);
  return modelStatus;
}

// drawn in the title bar on every frame; an empty text hides it
function missingBadge(node) {
  const count = missingModelsOfNode(node, modelStatus).length;
  const text = count ? `⚠ ${count} model${count > 1 ? "s" : ""} missing` : "";
  return new window.LGraphBadge({ text, fgColor: "#1b1b1b", bgColor: "#f0ad4e" });
}

function statusMessage(status) {
  if (!status) return "The pack's status route did not answer; see the ComfyUI log.";
  const missing = Object.values(status.missing ?? {});
  if (!missing.length) return `All model files are in ${status.models_dir}.`;
  return [`${missing.length} model${missing.length > 1 ? "s" : ""} missing (downloaded on first use when online):`,
    ...missing.map((p) => `• ${status.models_dir}/${p}`),
    `Or download them all now: ${DOWNLOAD_HINT}.`].join("\n");
}

async function showModelStatus() {
  const status = await refreshModelStatus();
  const missing = Object.keys(status?.missing ?? {}).length;
  app.extensionManager.toast.add({
    severity: status && !missing ? "success" : "warn", summary: "AniPortrait models",
    detail: statusMessage(status), life: 15000,
  });
}

// the node's title when the canvas shows the graph that runs, else its type's display name
function nodeTitle(nodeId, nodeType) {
  const node = app.graph?.getNodeById?.(nodeId);
  if (node && (!nodeType || node.comfyClass === nodeType)) return node.title;
  return window.LiteGraph?.registered_node_types?.[nodeType]?.title ?? nodeType ?? `node ${nodeId}`;
}

function showWarning(event) {
  const { message, node, node_type: nodeType } = event.detail ?? {};
  const warning = { summary: `AniPortrait: ${nodeTitle(node, nodeType)}`, detail: message };
  shownWarnings.push(warning);
  console.warn(`[AniPortrait] ${warning.summary}: ${message}`);
  app.extensionManager?.toast?.add?.({ severity: "warn", ...warning, life: 12000 });
}

const EXTENSION_NAME = "AniPortrait.ModelStatus";

// ComfyUI serves web/ twice when the pack's folder name differs from its pyproject name (WEB_DIRECTORY and
// [tool.comfy] web); registering twice would throw, so the second copy stands down.
if (!app.extensions.some((extension) => extension.name === EXTENSION_NAME)) app.registerExtension({
  name: EXTENSION_NAME,
  commands: [{ id: "AniPortrait.ShowModelStatus", label: "AniPortrait: model status", function: showModelStatus }],
  menuCommands: [{ path: ["Extensions", "AniPortrait"], commands: ["AniPortrait.ShowModelStatus"] }],
  async setup() {
    // a run may download models: recheck when it ends
    for (const event of ["execution_success", "execution_error"]) api.addEventListener(event, refreshModelStatus);
    api.addEventListener(WARNING_EVENT, showWarning);
    await refreshModelStatus();
    // for the browser tests (tests/test_ui.py)
    window.__aniportrait = { loaded: true, refreshModelStatus, shownWarnings, get status() { return modelStatus; } };
    console.log("[AniPortrait] web extension loaded");
  },
  nodeCreated(node) {
    if (node.comfyClass?.startsWith(NODE_PREFIX)) node.badges?.push(() => missingBadge(node));
  },
});
