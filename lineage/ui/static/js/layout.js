// A layered left-to-right layout for a directed graph (lineage is a DAG; cycles are tolerated).
// Layers: longest path from the sources (Kahn's order; a cycle is broken at its node of fewest
// remaining inputs). Order within a layer: barycentre sweeps, which keep edges short and mostly
// parallel. Linear in nodes + edges per sweep, so 2,000 nodes take a few milliseconds.

export const LAYER_GAP = 240;
export const ROW_GAP = 34;

export function layeredLayout(count, edges, sweeps = 4) {
  const succ = Array.from({ length: count }, () => []);
  const pred = Array.from({ length: count }, () => []);
  for (const [a, b] of edges) {
    if (a === b) continue;
    succ[a].push(b);
    pred[b].push(a);
  }
  const layer = assignLayers(count, succ, pred);
  const layers = [];
  for (let i = 0; i < count; i++) (layers[layer[i]] ||= []).push(i);
  const position = new Float64Array(count);
  for (const nodes of layers) if (nodes) nodes.forEach((n, i) => { position[n] = i; });
  for (let s = 0; s < sweeps; s++) {
    const down = s % 2 === 0;
    const order = down ? layers : [...layers].reverse();
    for (const nodes of order) {
      if (!nodes) continue;
      const key = new Float64Array(nodes.length);
      nodes.forEach((n, i) => {
        const near = down ? pred[n] : succ[n];
        let sum = 0;
        for (const m of near) sum += position[m];
        key[i] = near.length ? sum / near.length : position[n];
      });
      const idx = nodes.map((_, i) => i).sort((x, y) => key[x] - key[y] || x - y);
      const sorted = idx.map((i) => nodes[i]);
      sorted.forEach((n, i) => { position[n] = i; });
      nodes.splice(0, nodes.length, ...sorted);
    }
  }
  const tallest = Math.max(1, ...layers.map((nodes) => (nodes ? nodes.length : 0)));
  const x = new Float64Array(count);
  const y = new Float64Array(count);
  layers.forEach((nodes, k) => {
    if (!nodes) return;
    const offset = ((tallest - nodes.length) * ROW_GAP) / 2; // centre each layer on the tallest
    nodes.forEach((n, i) => { x[n] = k * LAYER_GAP; y[n] = offset + i * ROW_GAP; });
  });
  return { x, y, layer, width: layers.length * LAYER_GAP, height: tallest * ROW_GAP };
}

function assignLayers(count, succ, pred) {
  const remaining = Int32Array.from(pred, (p) => p.length);
  const layer = new Int32Array(count);
  const done = new Uint8Array(count);
  let queue = [];
  for (let i = 0; i < count; i++) if (remaining[i] === 0) queue.push(i);
  let placed = 0;
  while (placed < count) {
    if (!queue.length) {
      // A cycle: release the unplaced node with the fewest unplaced inputs.
      let best = -1;
      for (let i = 0; i < count; i++) {
        if (!done[i] && (best < 0 || remaining[i] < remaining[best])) best = i;
      }
      remaining[best] = 0;
      queue.push(best);
    }
    const next = [];
    for (const n of queue) {
      if (done[n]) continue;
      done[n] = 1;
      placed++;
      for (const m of succ[n]) {
        if (done[m]) continue;
        if (layer[m] < layer[n] + 1) layer[m] = layer[n] + 1;
        if (--remaining[m] === 0) next.push(m);
      }
    }
    queue = next;
  }
  return layer;
}
