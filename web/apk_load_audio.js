// AniPortrait Kit: audio player + upload button on "Load Audio (AniPortrait)" (APK_LoadAudio).
// The frontend's audio-upload widget (added for any required input "audio" with audio_upload) expects an
// "audioUI" player widget created BEFORE it; the frontend adds that player only to core LoadAudio, and
// without it the upload widget throws while the node is created. So add the player here, ahead of "upload".
import { app } from "../../scripts/app.js";

const EXTENSION_NAME = "AniPortrait.LoadAudioPlayer";

// web/ may be served twice (see aniportrait.js); registering twice would throw
if (!app.extensions.some((extension) => extension.name === EXTENSION_NAME)) app.registerExtension({
  name: EXTENSION_NAME,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const required = nodeData?.name === "APK_LoadAudio" ? nodeData.input?.required : null;
    if (!required || required.audioUI) return;
    const upload = required.upload;
    delete required.upload;
    required.audioUI = ["AUDIO_UI", {}];
    if (upload) required.upload = upload;
  },
});
