// The express one of the suite's shops: res.json, Date's toISOString,
// express's own ETag and X-Powered-By.
'use strict';
const express = require('express');
const crypto = require('crypto');

const variantB = process.env.VARIANT === 'B';
const [host, port] = process.env.ADDR.split(/:(?=[^:]*$)/);
const started = Date.now();
let served = 0;
let orders = 0;
const created = new Date(Date.UTC(2025, 2, 14, 9, 26, 53, 589));
const names = ['kettle', 'teapot', 'mug', 'spoon'];
const prices = [19.5, 20, 7.25, 3];

function item(id, planted) {
  const tags = new Set(['kitchen', 'new', 't' + id]);
  if (id % 2 === 0) tags.add('sale');
  return {
    id, name: names[id], price: prices[id] + (planted ? 1 : 0), tags: [...tags],
    createdAt: new Date(created.getTime() + id * 3600e3),
  };
}

const app = express();
app.use(express.json());
app.get('/api/items', (req, res) => {
  res.set('Cache-Control', variantB ? 'no-store' : 'max-age=60');
  res.json({ generatedAt: new Date(), requestId: crypto.randomUUID(), items: names.map((_, id) => item(id, false)) });
});
app.get('/api/items/:id', (req, res) => {
  const id = Number(req.params.id);
  if (!Number.isInteger(id) || id < 0 || id >= names.length) return res.status(404).json({ error: 'no such item' });
  if (variantB && id === 3) return res.status(500).json({ error: 'internal' });
  res.json({ item: item(id, variantB), viewedAt: new Date() });
});
app.get('/api/ranking', (req, res) => {
  const ranking = ['mug', 'kettle', 'spoon', 'teapot'];
  res.json({ ranking: variantB ? ranking.reverse() : ranking, at: Math.floor(Date.now() / 1000) });
});
app.get('/api/slow', (req, res) => {
  setTimeout(() => res.json({ ok: true, at: new Date() }), variantB ? 60 : 20);
});
app.get('/api/status', (req, res) => {
  res.set('X-Request-Id', crypto.randomUUID());
  served++;
  res.json({ status: 'ok', served, uptime: (Date.now() - started) / 1000, now: Date.now() });
});
app.post('/api/orders', (req, res) => {
  const { item: id, qty } = req.body || {};
  if (!Number.isInteger(id) || id < 0 || id >= names.length) return res.status(400).json({ error: 'bad order' });
  orders++;
  res.status(201).location('/api/orders/' + orders)
    .json({ id: crypto.randomUUID(), number: orders, createdAt: new Date(), total: qty * prices[id] });
});
app.get('/api/report.csv', (req, res) => {
  const rows = ['id,name,generated_at', ...names.map((n, id) => `${id},${n},${new Date().toISOString()}`)];
  res.type('text/csv').send(rows.join('\n') + '\n');
});
app.get('/api/health.txt', (req, res) => {
  res.type('text/plain').send(`# generated_at=${new Date().toISOString()}\nstatus ok\nitems ${names.length}\n`);
});
app.listen(Number(port), host);
