// IndexedDB: the outbox, the rejected edits and the cached scope survive reloads here.

export const DB = await new Promise((resolve, reject) => {
  const request = indexedDB.open("twin-field", 1);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore("outbox", { keyPath: "edit_id" });
    db.createObjectStore("rejected", { keyPath: "edit_id" });
    db.createObjectStore("photos", { keyPath: "sha256" });
    db.createObjectStore("cache");
  };
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

export function idb(store, mode, operation) {
  return new Promise((resolve, reject) => {
    const tx = DB.transaction(store, mode);
    const request = operation(tx.objectStore(store));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}
export const idbGet = (store, key) => idb(store, "readonly", (s) => s.get(key));
export const idbAll = (store) => idb(store, "readonly", (s) => s.getAll());
export const idbPut = (store, value, key) => idb(store, "readwrite", (s) => s.put(value, key));
export const idbDelete = (store, key) => idb(store, "readwrite", (s) => s.delete(key));
