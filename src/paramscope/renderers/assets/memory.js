// paramscope memory panel: the K/V cache recomputed in the page when context, batch, K/V dtype or runtime
// change. The same rules as paramscope.kv_cache (its docstring states them), in exact integers (BigInt).
// Plain JavaScript, no library, no network. Names from the model never reach this script's output:
// it writes numbers only, through textContent.
"use strict";

const paramscopeMemory = (function () {
  function rowBytes(dtype, elements) {
    // one token's row of one layer, rounded up to whole blocks (llama.cpp's q8_0: 32 elements in 34 bytes)
    const per = BigInt(dtype[0]);
    return ((BigInt(elements) + per - 1n) / per) * BigInt(dtype[1]);
  }

  function estimate(m, context, batch, kvName, runtime) {
    const dtypeName = m.kv_dtypes[kvName];
    const dtype = m.dtypes[dtypeName];
    let stateName = m.state_dtype[runtime] || dtypeName;
    if (m.dtypes[stateName][0] !== 1) stateName = "float32";
    const state = m.dtypes[stateName];
    const c = m.card;
    const L = BigInt(context);
    const B = BigInt(batch);
    const byKind = {};
    let kv = 0n;
    let recurrent = 0n;
    const transformers = runtime.startsWith("transformers");
    for (let i = 0; i < c.layer_kinds.length; i++) {
      const kind = c.layer_kinds[i];
      let bytes = 0n;
      if (kind === "recurrent") {
        bytes = B * rowBytes(state, c.recurrent_state_elements[i]);
        recurrent += bytes;
      } else if (kind !== "none") {
        let per = 0;
        if (kind === "mla") {
          per = runtime === "transformers-4"
            ? c.heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim)
            : c.kv_lora_rank + c.qk_rope_head_dim;
        } else {
          per = c.kv_heads[i] * (c.head_dim + c.v_dim);
        }
        let tokens = L;
        if (kind === "sliding") {
          const keep = BigInt(transformers ? c.sliding_window - 1 : c.sliding_window);
          tokens = L < keep ? L : keep;
        }
        bytes = per ? B * tokens * rowBytes(dtype, per) : 0n;
        kv += bytes;
      }
      byKind[kind] = (byKind[kind] || 0n) + bytes;
    }
    const weights = m.weights_bytes === null ? null : BigInt(m.weights_bytes);
    return { byKind, kv, state: recurrent, weights, total: weights === null ? null : weights + kv + recurrent };
  }

  function human(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let value = Number(n);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? n.toString() + " B" : value.toFixed(1) + " " + units[unit];
  }

  function show(cell, n) {
    cell.dataset.value = n === null ? "" : n.toString();
    cell.textContent = n === null ? "unknown" : human(n) + " (" + n.toLocaleString("en-US") + " B)";
  }

  function wire(doc) {
    const block = doc.getElementById("paramscope-memory");
    if (!block) return;
    const m = JSON.parse(block.textContent);
    const inputs = ["mem-context", "mem-batch", "mem-kv-dtype", "mem-runtime"].map((id) => doc.getElementById(id));
    const note = doc.getElementById("mem-note");
    function update() {
      const context = parseInt(inputs[0].value, 10);
      const batch = parseInt(inputs[1].value, 10);
      if (!(context >= 1 && batch >= 1)) {
        note.textContent = "context and batch must be whole numbers of 1 or more";
        return;
      }
      note.textContent = m.card.max_context !== null && context > m.card.max_context
        ? "the context is longer than the model's max_context " + m.card.max_context : "";
      const e = estimate(m, context, batch, inputs[2].value, inputs[3].value);
      for (const kind of Object.keys(e.byKind)) show(doc.getElementById("mem-" + kind), e.byKind[kind]);
      show(doc.getElementById("mem-weights"), e.weights);
      show(doc.getElementById("mem-total"), e.total);
    }
    for (const input of inputs) input.addEventListener("input", update);
    update();
  }

  return { estimate, wire };
})();

if (typeof document !== "undefined") paramscopeMemory.wire(document);
if (typeof module !== "undefined") module.exports = paramscopeMemory;
