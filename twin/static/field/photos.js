// Photos: hashed on the tablet, re-encoded when large, uploaded by their hash.
import { PHOTO_MAX_BYTES, PHOTO_MAX_SIDE, PHOTO_TYPES, S } from "./state.js";
import { t } from "./words.js";
import { $, h, toast } from "./dom.js";
import { idbDelete, idbGet, idbPut } from "./idb.js";
import { api } from "./api.js";

export async function sha256(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Cameras may give HEIC or very large files: those are re-encoded as a smaller JPEG.
export async function uploadable(file) {
  if (PHOTO_TYPES.includes(file.type) && file.size <= PHOTO_MAX_BYTES) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas.convertToBlob({ type: "image/jpeg", quality: 0.85 });
}

export async function attachPhoto(file) {
  if (!file) return;
  const blob = await uploadable(file).catch(() => null);
  if (!blob) {
    toast(t("photoType"), "error");
    return;
  }
  const digest = await sha256(blob);
  // kept on the device until uploaded, so that a photo taken offline is not lost
  await idbPut("photos", { sha256: digest, blob, type: blob.type, tried: false });
  if (!S.sheet?.photos) return; // the form was closed meanwhile
  if (!S.sheet.photos.includes(digest)) S.sheet.photos.push(digest);
  drawThumbs();
}

export async function drawThumbs() {
  const box = $("thumbs");
  const images = await Promise.all(S.sheet.photos.map(async (digest) => {
    const local = await idbGet("photos", digest);
    const blob = local?.blob ?? (navigator.onLine
      ? await api(`/photos/${digest}`).then((r) => r.blob()).catch(() => null) : null);
    return blob ? h("img", { src: URL.createObjectURL(blob), alt: digest.slice(0, 8) })
      : h("span", { class: "hint" }, digest.slice(0, 8));
  }));
  box.replaceChildren(...images);
}

// A HEAD first only when an earlier upload may have arrived (its answer lost): re-sending
// would be safe, but costs the link a whole photo.
export async function uploadPhotos(edits) {
  const digests = new Set(edits.flatMap((e) => e.changes.photos?.new ?? []));
  for (const digest of digests) {
    const photo = await idbGet("photos", digest);
    if (!photo) continue; // already uploaded
    const stored = photo.tried && (await fetch(`/photos/${digest}`, { method: "HEAD",
      headers: { Authorization: `Bearer ${S.token}` } })).ok;
    if (!stored) {
      await idbPut("photos", { ...photo, tried: true });
      await api(`/photos/${digest}`, { method: "PUT", body: photo.blob,
        headers: { "Content-Type": photo.type } });
    }
    await idbDelete("photos", digest);
  }
}
