// Time-series charts with the vendored uPlot (a global from /assets/vendor/uPlot.iife.min.js):
// time on x in the browser's local time, values in human units, width following the container.

import { h } from './format.js';

export const COLORS = ['#2563eb', '#d9480f', '#2b8a3e', '#ae3ec9', '#e67700', '#0b7285'];

const live = new Set();

const secondFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const minuteFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });

/** Destroys every chart (on navigation). */
export function destroyCharts() {
  for (const entry of live) entry.destroy();
  live.clear();
}

/**
 * Draws a chart into a new element and returns it.
 * `spec`: `title`, `x` (Unix seconds), `series` ([{label, values, color, dash, fill}]),
 * `format` (a value's text, for the legend and the axis), `axisFormat` (for the axis, if shorter),
 * `axisSize`, `height`, `yMin`, `yMax`, `testid`, `bands` (intervals to shade behind the lines:
 * [{from, to} in Unix seconds, `open` for an interval still running], such as quality issues).
 */
export function chart(spec) {
  const bands = spec.bands ?? [];
  const data = { bands: String(bands.length) };
  if (spec.testid) data.testid = spec.testid;
  const box = h('figure', { class: 'chart', data },
    h('figcaption', { text: spec.title }));
  if (!spec.x.length) {
    box.append(h('p', { class: 'empty muted', text: 'no data in this range' }));
    return box;
  }
  const plotBox = h('div', { class: 'chart-plot' });
  box.append(plotBox);
  const format = spec.format ?? ((value) => String(value));
  const options = {
    width: 400,
    height: spec.height ?? 200,
    legend: { live: true },
    hooks: bands.length ? { drawClear: [(u) => drawBands(u, bands)] } : {},
    cursor: { drag: { x: true, y: false } },
    scales: {
      // Data at a single time has no extent (uPlot would then show 1,000 days): show a minute
      // either side of it.
      x: {
        time: true,
        range: (u, min, max) => {
          const xs = u.data[0];
          const low = xs[0];
          const high = xs[xs.length - 1];
          return high - low < 1 ? [low - 60, high + 60] : [min, max];
        },
      },
      y: {
        range: (u, min, max) => {
          const low = spec.yMin ?? Math.min(0, min ?? 0);
          let high = spec.yMax ?? (max ?? 1);
          if (high <= low) high = low + 1;
          return [low, spec.yMax ?? high * 1.1];
        },
      },
    },
    axes: [
      {
        stroke: '#55607a',
        grid: { stroke: '#e8ebf2' },
        ticks: { stroke: '#e8ebf2' },
        space: 64,
        // One line per tick in local time, as precise as the range needs (uPlot's default
        // two-line labels overlap on narrow charts).
        values: (u, ticks) => {
          const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
          const format = span > 2 * 86400 ? dayFormat : span > 1800 ? minuteFormat : secondFormat;
          return ticks.map((tick) => format.format(new Date(tick * 1000)));
        },
      },
      {
        stroke: '#55607a',
        grid: { stroke: '#e8ebf2' },
        ticks: { stroke: '#e8ebf2' },
        size: spec.axisSize ?? 86,
        values: (u, values) => values.map((value) => (spec.axisFormat ?? format)(value)),
      },
    ],
    series: [
      { label: 'time', value: (u, value) => (value === null ? '—' : new Date(value * 1000).toLocaleTimeString()) },
      ...spec.series.map((series, index) => ({
        label: series.label,
        stroke: series.color ?? COLORS[index % COLORS.length],
        width: 1.5,
        dash: series.dash,
        fill: series.fill,
        points: { show: spec.points ?? spec.x.length < 60, size: 4 },
        spanGaps: false,
        value: (u, value) => (value === null || value === undefined ? '—' : format(value)),
      })),
    ],
  };
  const values = [spec.x, ...spec.series.map((series) => series.values)];
  let plot = null;
  // uPlot needs a width: draw once the box is in the document and measured.
  const observer = new ResizeObserver((entries) => {
    const width = Math.max(220, Math.floor(entries[0].contentRect.width));
    if (!plot) {
      plot = new window.uPlot({ ...options, width }, values, plotBox);
    } else if (Math.abs(plot.width - width) > 1) {
      plot.setSize({ width, height: options.height });
    }
  });
  observer.observe(plotBox);
  live.add({
    destroy() {
      observer.disconnect();
      plot?.destroy();
    },
  });
  return box;
}

/** Shades each band over the plot's height, under the series (drawn once the canvas is cleared). */
function drawBands(u, bands) {
  const { ctx, bbox } = u;
  ctx.save();
  ctx.beginPath();
  ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
  ctx.clip();
  for (const band of bands) {
    const left = u.valToPos(band.from, 'x', true);
    const right = u.valToPos(band.to, 'x', true);
    ctx.fillStyle = band.open ? 'rgba(201, 42, 42, 0.16)' : 'rgba(230, 119, 0, 0.16)';
    ctx.fillRect(left, bbox.top, Math.max(right - left, 2), bbox.height);
  }
  ctx.restore();
}

/**
 * The x values and a function turning per-window values into y values for charting windows as
 * what they are, a value over an interval: a segment from each window's start to its end, with
 * a break where windows do not touch.
 */
export function windowSegments(windows) {
  const x = [];
  const slots = [];
  let previousEnd = null;
  windows.forEach((window, index) => {
    const start = seconds(window.start);
    const end = Math.max(seconds(window.end), start + 0.001);
    if (previousEnd !== null && start > previousEnd + 1) {
      x.push((previousEnd + start) / 2);
      slots.push(null);
    }
    x.push(start, end);
    slots.push(index, index);
    previousEnd = end;
  });
  return { x, values: (pick) => slots.map((slot) => (slot === null ? null : pick(windows[slot]))) };
}

/** Seconds since the epoch of an RFC 3339 time. */
export function seconds(value) {
  return new Date(value).getTime() / 1000;
}
