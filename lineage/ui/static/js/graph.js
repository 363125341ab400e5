// An SVG drawing of a laid-out graph with pan (drag), zoom (wheel, around the pointer) and selection
// (click). Built as one markup string: with 2,000 nodes that is far faster than creating elements one
// by one. Plain edges share one <path>; marked edges (masking) get their own, with a label.
import { LAYER_GAP, layeredLayout } from "./layout.js";

const SVG_NS = "http://www.w3.org/2000/svg";
export const NODE_W = 190;
export const NODE_H = 24;
const FAR_ZOOM = 0.45; // below this scale labels are hidden (shapes stay, readable again on zoom-in)

export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function shortName(name, keep = 3) {
  const parts = String(name).split("/").filter(Boolean);
  return parts.length > keep ? parts.slice(-keep).join("/") : String(name);
}

function clip(text, max) {
  return text.length > max ? `…${text.slice(text.length - max + 1)}` : text;
}

export class GraphView {
  constructor(container, { onSelect } = {}) {
    this.container = container;
    this.onSelect = onSelect || (() => {});
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("class", "graph");
    this.svg.setAttribute("role", "img");
    container.appendChild(this.svg);
    this.scale = 1; this.tx = 20; this.ty = 20;
    this.selected = -1;
    this._wire();
  }

  // nodes: [{id, classes, label, title, badge, badgeClass, data}], edges: [{from, to, classes?, label?}]
  render(nodes, edges) {
    this.nodes = nodes;
    this.edges = edges;
    const lay = layeredLayout(nodes.length, edges.map((e) => [e.from, e.to]));
    this.layout = lay;
    const { x, y } = lay;
    const plain = [];
    const marked = [];
    for (const e of edges) {
      const d = curve(x[e.from] + NODE_W, y[e.from] + NODE_H / 2, x[e.to], y[e.to] + NODE_H / 2);
      if (e.classes) {
        marked.push(`<path class="edge ${esc(e.classes)}" d="${d}" data-from="${e.from}" data-to="${e.to}">` +
          `<title>${esc(e.title || e.label || "")}</title></path>`);
        if (e.label) {
          const mx = (x[e.from] + NODE_W + x[e.to]) / 2;
          const my = (y[e.from] + y[e.to]) / 2 + NODE_H / 2 - 4;
          marked.push(`<text class="edge-label" x="${mx}" y="${my}" text-anchor="middle">${esc(e.label)}</text>`);
        }
      } else {
        plain.push(d);
      }
    }
    const parts = [];
    nodes.forEach((n, i) => {
      const label = clip(n.label, n.badge ? 26 : 30);
      parts.push(
        `<g class="node ${n.classes}" data-index="${i}" data-id="${esc(n.id)}"${n.attrs || ""} ` +
        `transform="translate(${x[i]},${y[i]})">` +
        `<rect class="box" width="${NODE_W}" height="${NODE_H}" rx="3"></rect>` +
        `<rect class="stripe" width="6" height="${NODE_H}"></rect>` +
        `<text x="11" y="16">${esc(label)}</text>` +
        (n.badge ? `<rect class="lvl ${n.badgeClass || ""}" x="${NODE_W - 30}" y="4" width="26" height="16" rx="3"></rect>` +
          `<text class="badge" x="${NODE_W - 17}" y="16" text-anchor="middle">${esc(n.badge)}</text>` : "") +
        `</g>`);
    });
    this.svg.innerHTML =
      `<g class="viewport"><path class="edges" d="${plain.join("")}"></path>${marked.join("")}` +
      `<path class="edge hl" d=""></path>${parts.join("")}</g>`;
    this.viewport = this.svg.firstChild;
    this.highlight = this.svg.querySelector(".edge.hl");
    this.nodeEls = this.svg.querySelectorAll("g.node");
    this.selected = -1;
    this.fit();
  }

  fit() {
    if (!this.layout) return;
    const box = this.svg.getBoundingClientRect();
    const w = this.layout.width + 40;
    const h = this.layout.height + 40;
    this.scale = Math.min(1.2, Math.max(0.02, Math.min(box.width / w, box.height / h)));
    this.tx = (box.width - (this.layout.width - LAYER_GAP + NODE_W) * this.scale) / 2;
    this.ty = Math.max(10, (box.height - this.layout.height * this.scale) / 2);
    this._apply();
  }

  select(index, { center = false } = {}) {
    if (this.selected >= 0) this.nodeEls[this.selected].classList.remove("selected");
    this.selected = index;
    if (index < 0) { this.highlight.setAttribute("d", ""); return; }
    this.nodeEls[index].classList.add("selected");
    const { x, y } = this.layout;
    const d = [];
    for (const e of this.edges) {
      if (e.from === index || e.to === index) {
        d.push(curve(x[e.from] + NODE_W, y[e.from] + NODE_H / 2, x[e.to], y[e.to] + NODE_H / 2));
      }
    }
    this.highlight.setAttribute("d", d.join(""));
    if (center) {
      const box = this.svg.getBoundingClientRect();
      this.scale = Math.max(this.scale, 0.8);
      this.tx = box.width / 2 - (x[index] + NODE_W / 2) * this.scale;
      this.ty = box.height / 2 - (y[index] + NODE_H / 2) * this.scale;
      this._apply();
    }
  }

  mark(indexes, cls) {
    for (const el of this.svg.querySelectorAll(`g.node.${cls}`)) el.classList.remove(cls);
    for (const i of indexes) this.nodeEls[i].classList.add(cls);
  }

  _apply() {
    this.viewport.setAttribute("transform", `translate(${this.tx},${this.ty}) scale(${this.scale})`);
    this.svg.classList.toggle("far", this.scale < FAR_ZOOM);
  }

  _wire() {
    let drag = null;
    this.svg.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, tx: this.tx, ty: this.ty, moved: false };
    });
    this.svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) { drag.moved = true; this.svg.setPointerCapture(ev.pointerId); this.svg.classList.add("dragging"); }
      this.tx = drag.tx + dx; this.ty = drag.ty + dy;
      this._apply();
    });
    const end = (ev) => {
      if (!drag) return;
      const wasClick = !drag.moved;
      drag = null;
      this.svg.classList.remove("dragging");
      if (!wasClick || ev.type !== "pointerup") return;
      const node = ev.target.closest && ev.target.closest("g.node");
      if (node) {
        const index = Number(node.dataset.index);
        this.select(index);
        this.onSelect(index, this.nodes[index]);
      }
    };
    this.svg.addEventListener("pointerup", end);
    // One shared tooltip instead of a <title> per node: 2,000 fewer elements to build and lay out.
    const tip = document.getElementById("tooltip");
    this.svg.addEventListener("pointerover", (ev) => {
      const node = ev.target.closest && ev.target.closest("g.node");
      if (!tip || !node || drag) return;
      tip.textContent = this.nodes[Number(node.dataset.index)].title;
      tip.style.left = `${ev.clientX + 12}px`;
      tip.style.top = `${ev.clientY + 12}px`;
      tip.hidden = false;
    });
    this.svg.addEventListener("pointerout", () => { if (tip) tip.hidden = true; });
    this.svg.addEventListener("pointercancel", end);
    this.svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const box = this.svg.getBoundingClientRect();
      const px = ev.clientX - box.left;
      const py = ev.clientY - box.top;
      const factor = Math.exp(-ev.deltaY * 0.0015);
      const scale = Math.min(4, Math.max(0.02, this.scale * factor));
      this.tx = px - ((px - this.tx) * scale) / this.scale;
      this.ty = py - ((py - this.ty) * scale) / this.scale;
      this.scale = scale;
      this._apply();
    }, { passive: false });
  }
}

function curve(x1, y1, x2, y2) {
  const mid = (x1 + x2) / 2;
  return `M${x1},${y1}C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
}
