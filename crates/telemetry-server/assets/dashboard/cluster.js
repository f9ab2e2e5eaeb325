// Cluster mode on the overview: the instances sharing the work (`GET /v1/cluster`: id, last
// heartbeat, partitions held) and every partition with its owner, free ones marked. Without the
// cluster (`cluster` is null in `GET /v1/overview`) the overview says it is a single instance.

import { h, table, timeCell, number, empty } from './format.js';

/** The owner of each partition `0..count`, from the instances' lists (null: free). */
export function owners(status) {
  const owner = new Array(Number(status.partitions ?? 0)).fill(null);
  for (const instance of status.instances ?? []) {
    for (const partition of instance.partitions ?? []) {
      if (partition >= 0 && partition < owner.length) owner[partition] = instance.id;
    }
  }
  return owner;
}

/** What the overview's "Instances" card says: `{value, note, warn}`. */
export function clusterStat(overview, status) {
  if (!overview.cluster) return { value: '1', note: 'single instance (cluster mode off)', warn: false };
  if (!status) return { value: '—', note: `cluster of ${number(overview.cluster.partitions)} partitions` };
  const free = owners(status).filter((owner) => owner === null).length;
  return {
    value: number(status.instances.length),
    note: `${number(status.partitions)} partitions · ${free ? `${number(free)} without owner` : 'all owned'}`,
    warn: free > 0,
  };
}

/** The cluster panel: instances, then the partitions and their owners. */
export function clusterPanel(overview, status) {
  const owner = owners(status);
  // One colour per instance, in the order the API lists them (five, then they repeat).
  const index = new Map(status.instances.map((instance, position) => [instance.id, position]));
  const self = overview.cluster?.instanceId;
  const instances = status.instances.length
    ? table([
      { label: 'Instance', key: 'id', class: 'mono', cell: (instance) => [instance.id, instance.id === self ? h('span', { class: 'muted small', text: ' (this one)' }) : null] },
      { label: 'Last seen', key: 'last-seen', cell: (instance) => timeCell(instance.lastSeen) },
      { label: 'Partitions owned', key: 'owned', class: 'num', cell: (instance) => number(instance.partitions.length) },
      { label: 'Which', key: 'which', class: 'clip', cell: (instance) => instance.partitions.join(', ') || '—' },
    ], status.instances.map((instance) => ({ value: instance, attrs: { data: { instance: instance.id } } })), { 'data-testid': 'cluster-instances' })
    : empty('No instance has sent a heartbeat within three leases.');
  const partitions = h('div', { class: 'partitions', data: { testid: 'cluster-partitions' } },
    owner.map((id, partition) => h('div', {
      class: id === null ? 'partition free' : `partition owner-${index.get(id) % 5}`,
      data: { partition: String(partition), owner: id ?? '' },
      title: id === null ? `partition ${partition}: no owner` : `partition ${partition}: ${id}`,
    }, h('strong', { text: String(partition) }), ' ', h('span', { class: 'mono', text: id ?? 'free' }))));
  return h('section', { class: 'panel', data: { testid: 'cluster' } },
    h('div', { class: 'panel-head' }, h('h2', { text: 'Cluster' }),
      h('span', { class: 'muted small', text: 'instances seen within three leases; each partition is processed by one owner' })),
    instances,
    partitions);
}
