// AniPortrait Kit web extension, what a new user meets first:
// - the ready-made workflows ship with example file names in their "(pick a file)" nodes; running one before
//   picking a file says so plainly (and shows the node) instead of ComfyUI's "value not in list" validation error;
// - the template browser of frontend 1.32 describes a pack's workflows by their file names only; our cards get
//   the one-line description each workflow carries (GET /aniportrait/workflows);
// - ComfyUI 0.3.75 neither sends nor searches node search_aliases: the node search also finds our nodes by the
//   words in GET /aniportrait/search_aliases ("lip sync", "talking head", ...). Newer ComfyUI does this itself.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXTENSION_NAME = "AniPortrait.FrontDoor";
const PICK_SUFFIX = "(pick a file)";

const KINDS = [["video", "a video"], ["audio", "an audio file"], ["image", "an image"]];

function fileKind(node) {
  const type = node.type?.toLowerCase() ?? "";
  return (KINDS.find(([word]) => type.includes(word)) ?? ["", "a file"])[1];
}

// the files the server offers for a node's inputs now (the editor's lists date from the page load, so a file
// uploaded since then is missing from them): {input name: [choices]}
async function offeredFiles(nodeType) {
  const response = await api.fetchApi(`/object_info/${encodeURIComponent(nodeType)}`);
  const spec = response.ok ? (await response.json())[nodeType]?.input ?? {} : {};
  const offered = {};
  for (const [name, input] of Object.entries({ ...spec.required, ...spec.optional })) {
    const choices = Array.isArray(input?.[0]) ? input[0] : input?.[1]?.options;
    if (Array.isArray(choices)) offered[name] = choices;
  }
  return offered;
}

// "(pick a file)" nodes that run and whose file choice is not among the files the server offers
async function unpickedFiles(graph) {
  const unpicked = [];
  for (const node of graph.nodes) {
    if (node.mode !== 0 || !node.title?.endsWith(PICK_SUFFIX)) continue;
    const offered = await offeredFiles(node.type);
    for (const widget of node.widgets ?? []) {
      const choices = offered[widget.name];
      if (choices && !choices.includes(widget.value)) unpicked.push({ node, widget });
    }
  }
  return unpicked;
}

function pickMessage(unpicked) {
  const lines = unpicked.map(({ node, widget }) =>
    `• Pick ${fileKind(node)} in "${node.title}" (its "${widget.name}" is "${widget.value}", which is not in `
    + "ComfyUI's input folder).");
  return [...lines, "", "Upload one with the node's \"choose file to upload\" button, or put the file into "
    + "ComfyUI's input folder and press R. The workflow's Read me note says what to pick and where to get a "
    + "sample. Nothing was run."].join("\n");
}

function guardQueue() {
  const queuePrompt = api.queuePrompt.bind(api);
  api.queuePrompt = async (number, data, options) => {
    const unpicked = await unpickedFiles(app.graph);
    if (unpicked.length) {
      app.canvas.selectNode?.(unpicked[0].node);
      app.canvas.centerOnNode?.(unpicked[0].node);
      throw new Error(pickMessage(unpicked));
    }
    return queuePrompt(number, data, options);
  };
}

// template cards: <div data-testid="template-workflow-NAME"> ... <p title="name with spaces">
let descriptions = null;

function describeCards() {
  for (const [name, description] of Object.entries(descriptions ?? {})) {
    const text = document.querySelector(`[data-testid="template-workflow-${CSS.escape(name)}"] p[title]`);
    if (text && text.textContent !== description) {
      text.textContent = description;
      text.title = description;
    }
  }
}

async function describeTemplates() {
  try {
    const response = await api.fetchApi("/aniportrait/workflows");
    descriptions = response.ok ? await response.json() : null;
  } catch (error) {
    console.warn("[AniPortrait] workflow descriptions unavailable:", error);
  }
  if (!descriptions) return;
  new MutationObserver(() => {
    if (document.querySelector('[data-testid^="template-workflow-"]')) describeCards();
  }).observe(document.body, { childList: true, subtree: true });
}

// the node search of frontend 1.32 (pinia store "nodeDef", its nodeSearchService, rebuilt when the node
// definitions change) matches names and display names only; our aliases are put in front of its results
let aliases = null;

function nodeDefStore() {
  const root = document.getElementById("vue-app")?.__vue_app__;
  return root?.config.globalProperties.$pinia?._s.get("nodeDef") ?? null;
}

function aliasMatches(query) {
  const words = query.toLowerCase().trim();
  if (words.length < 3) return [];
  return Object.entries(aliases ?? {})
    .filter(([, phrases]) => phrases.some((phrase) => phrase.includes(words) || words.includes(phrase)))
    .map(([name]) => name);
}

function searchAliasesToo() {
  const store = nodeDefStore();
  const service = store?.nodeSearchService;
  if (!service || service.aniportraitAliases) return;
  const searchNode = service.searchNode.bind(service);
  service.searchNode = (query, filters = [], ...rest) => {
    const found = searchNode(query, filters, ...rest);
    if (filters.length) return found;
    const extra = aliasMatches(query).map((name) => store.nodeDefsByName[name])
      .filter((def) => def && !found.includes(def));
    return [...extra, ...found];
  };
  service.aniportraitAliases = true;
}

async function addSearchAliases() {
  const store = nodeDefStore();
  const ours = store?.nodeDefsByName?.APK_Audio2Mesh;
  if (!store || !ours || ours.search_aliases !== undefined) return;  // this ComfyUI searches aliases itself
  try {
    const response = await api.fetchApi("/aniportrait/search_aliases");
    aliases = response.ok ? await response.json() : null;
  } catch (error) {
    console.warn("[AniPortrait] search aliases unavailable:", error);
  }
  if (aliases) searchAliasesToo();
}

// registered once even when ComfyUI serves web/ twice (see aniportrait.js)
if (!app.extensions.some((extension) => extension.name === EXTENSION_NAME)) app.registerExtension({
  name: EXTENSION_NAME,
  async setup() {
    guardQueue();
    await addSearchAliases();
    await describeTemplates();
  },
  refreshComboInNodes() {
    // the node definitions were reloaded (R): the search service is rebuilt on its next use
    setTimeout(searchAliasesToo, 0);
  },
});
