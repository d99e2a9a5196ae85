// A grouped bar chart as a standalone SVG file (no dependencies): one panel
// per measurement condition, one group per x label, one bar per series, on
// a log10 scale so 10 MB/s and 4 GB/s fit in one picture.

export interface ChartPanel {
  readonly title: string;
  readonly groups: readonly { readonly label: string; readonly bars: readonly { readonly series: string; readonly value: number }[] }[];
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const PANEL_W = 560;
const PANEL_H = 260;
const MARGIN = { left: 60, right: 10, top: 28, bottom: 36 };

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChartSvg(title: string, unit: string, panels: readonly ChartPanel[]): string {
  const series = [...new Set(panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.series))))];
  const color = (name: string): string => PALETTE[series.indexOf(name) % PALETTE.length]!;
  const values = panels.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.value))).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values, 1)));
  const hi = Math.ceil(Math.log10(Math.max(...values, 10)));
  const cols = Math.min(2, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const width = cols * PANEL_W;
  const height = 40 + rows * PANEL_H + 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  panels.forEach((panel, index) => {
    const x0 = (index % cols) * PANEL_W + MARGIN.left;
    const y0 = 40 + Math.floor(index / cols) * PANEL_H + MARGIN.top;
    const w = PANEL_W - MARGIN.left - MARGIN.right;
    const h = PANEL_H - MARGIN.top - MARGIN.bottom;
    const y = (v: number): number => y0 + h - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * h;
    out.push(`<text x="${x0 + w / 2}" y="${y0 - 10}" text-anchor="middle" font-size="12">${escape(panel.title)}</text>`);
    for (let e = lo; e <= hi; e++) {
      out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`);
      out.push(`<text x="${x0 - 4}" y="${y(10 ** e) + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toPrecision(1)}</text>`);
    }
    out.push(`<text transform="translate(${x0 - 44},${y0 + h / 2}) rotate(-90)" text-anchor="middle">${escape(unit)}</text>`);
    const groupW = w / panel.groups.length;
    panel.groups.forEach((group, g) => {
      const barW = (groupW * 0.8) / Math.max(1, group.bars.length);
      group.bars.forEach((bar, b) => {
        const bx = x0 + g * groupW + groupW * 0.1 + b * barW;
        const by = y(bar.value);
        out.push(`<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(y0 + h - by).toFixed(1)}" fill="${color(bar.series)}"><title>${escape(`${bar.series} ${group.label}: ${bar.value.toFixed(1)} ${unit}`)}</title></rect>`);
      });
      out.push(`<text x="${x0 + g * groupW + groupW / 2}" y="${y0 + h + 14}" text-anchor="middle">${escape(group.label)}</text>`);
    });
    out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y0 + h}" y2="${y0 + h}" stroke="#333"/>`);
  });
  series.forEach((name, i) => {
    const lx = 10 + i * 100;
    out.push(`<rect x="${lx}" y="${height - 20}" width="10" height="10" fill="${color(name)}"/><text x="${lx + 14}" y="${height - 11}">${escape(name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export interface RatioBar {
  readonly group: string;
  readonly label: string;
  readonly ratio: number;
  /** Shown hatched-grey: a figure of a different system. */
  readonly reference?: boolean;
}

/**
 * Horizontal bars of ratios to a baseline (1.0 drawn as a line), grouped,
 * with optional marks (e.g. a target at 0.9) and a footer line (the machine).
 */
export function ratioChartSvg(title: string, footer: string, bars: readonly RatioBar[], marks: readonly { at: number; label: string }[] = []): string {
  const LABEL_W = 330;
  const PLOT_W = 420;
  const ROW_H = 16;
  const GROUP_H = 20;
  const top = 46;
  const groups = [...new Set(bars.map((b) => b.group))];
  const maxRatio = Math.max(1.2, ...bars.map((b) => b.ratio), ...marks.map((m) => m.at)) * 1.05;
  const x = (v: number): number => LABEL_W + (Math.max(0, v) / maxRatio) * PLOT_W;
  const height = top + groups.length * GROUP_H + bars.length * ROW_H + 40;
  const width = LABEL_W + PLOT_W + 70;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="14">${escape(title)}</text>`,
    `<text x="${width / 2}" y="34" text-anchor="middle" fill="#555">ratio to the baseline measured in the same run (1.0 = equal)</text>`,
  ];
  let y = top;
  for (const group of groups) {
    out.push(`<text x="6" y="${y + 14}" font-weight="bold">${escape(group)}</text>`);
    y += GROUP_H;
    for (const bar of bars.filter((b) => b.group === group)) {
      const fill = bar.reference === true ? '#bbbbbb' : '#1f77b4';
      out.push(`<text x="${LABEL_W - 6}" y="${y + 11}" text-anchor="end">${escape(bar.label)}</text>`);
      out.push(`<rect x="${LABEL_W}" y="${y + 2}" width="${(x(bar.ratio) - LABEL_W).toFixed(1)}" height="${ROW_H - 4}" fill="${fill}"><title>${escape(`${group} ${bar.label}: ${bar.ratio}`)}</title></rect>`);
      out.push(`<text x="${(x(bar.ratio) + 4).toFixed(1)}" y="${y + 11}">${bar.ratio.toFixed(2)}</text>`);
      y += ROW_H;
    }
  }
  const lines = [{ at: 1, label: '1.0', color: '#333' }, ...marks.map((m) => ({ ...m, color: '#d62728' }))];
  for (const line of lines) {
    out.push(`<line x1="${x(line.at).toFixed(1)}" x2="${x(line.at).toFixed(1)}" y1="${top}" y2="${y}" stroke="${line.color}" stroke-dasharray="${line.at === 1 ? '' : '4 3'}"/>`);
    out.push(`<text x="${x(line.at).toFixed(1)}" y="${y + 12}" text-anchor="middle" fill="${line.color}">${escape(line.label)}</text>`);
  }
  out.push(`<text x="6" y="${height - 8}" fill="#555" font-size="10">${escape(footer)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
