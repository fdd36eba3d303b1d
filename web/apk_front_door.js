// AniPortrait Kit web extension, what a new user meets first:
// - the ready-made workflows ship with example file names in their "(pick a file)" nodes; when ComfyUI refuses a
//   run because such a file is not in its input folder, the user reads what to pick (and sees the node) instead of
//   ComfyUI's "value not in list" validation error;
// - the template browser of frontend 1.32 describes a pack's workflows by their file names only; our cards get
//   the one-line description each workflow carries (GET /aniportrait/workflows);
// - ComfyUI 0.3.75 neither sends nor searches node search_aliases: the node search also finds our nodes by the
//   words in GET /aniportrait/search_aliases ("lip sync", "talking head", ...). Newer ComfyUI does this itself.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { fetchPackJson } from "./apk_fetch.js";

const EXTENSION_NAME = "AniPortrait.FrontDoor";
const PICK_SUFFIX = "(pick a file)";
const FILE_ERRORS = ["value_not_in_list", "custom_validation_failed"];

const KINDS = [["video", "a video"], ["audio", "an audio file"], ["image", "an image"]];

function fileKind(node) {
  const type = node.type?.toLowerCase() ?? "";
  return (KINDS.find(([word]) => type.includes(word)) ?? ["", "a file"])[1];
}

// ComfyUI refused the prompt (HTTP 400): the file inputs of "(pick a file)" nodes that its validation refused (the
// choice is not in the list, or the loader's own check failed), or null when anything else is wrong too (then
// ComfyUI's own report is the better one)
function unpickedFiles(nodeErrors) {
  const unpicked = [];
  for (const [id, entry] of Object.entries(nodeErrors ?? {})) {
    const node = app.graph.getNodeById(Number(id)) ?? app.graph.getNodeById(id);
    for (const error of entry.errors ?? []) {
      if (!node?.title?.endsWith(PICK_SUFFIX) || !FILE_ERRORS.includes(error.type)) return null;
      const input = error.extra_info?.input_name;
      const value = error.extra_info?.received_value ?? node.widgets?.find((w) => w.name === input)?.value;
      const reason = String(error.details ?? "").split(" - ").slice(1).join(" - ")
        || `"${value}" is not in ComfyUI's input folder`;
      if (!unpicked.some((item) => item.node === node && item.input === input))
        unpicked.push({ node, input, reason });
    }
  }
  return unpicked.length ? unpicked : null;
}

function pickMessage(unpicked) {
  const lines = unpicked.map(({ node, input, reason }) =>
    `• Pick ${fileKind(node)} in "${node.title}" (its ${input}: ${reason}).`);
  return [...lines, "", "Upload one with the node's \"choose file to upload\" button, or put the file into "
    + "ComfyUI's input folder and press R. The workflow's Read me note says what to pick and where to get a "
    + "sample. Nothing was run."].join("\n");
}

function guardQueue() {
  const queuePrompt = api.queuePrompt.bind(api);
  api.queuePrompt = async (number, data, options) => {
    try {
      return await queuePrompt(number, data, options);
    } catch (error) {
      const unpicked = unpickedFiles(error?.response?.node_errors);
      if (!unpicked) throw error;
      app.canvas.selectNode?.(unpicked[0].node);
      app.canvas.centerOnNode?.(unpicked[0].node);
      throw new Error(pickMessage(unpicked));
    }
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
  descriptions = await fetchPackJson("/aniportrait/workflows", "workflow descriptions");
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
  aliases = await fetchPackJson("/aniportrait/search_aliases", "search aliases");
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
