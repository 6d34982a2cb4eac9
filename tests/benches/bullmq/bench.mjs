// BullMQ side of the timer benchmark: delayed jobs on the same redis-server,
// measured like Whistle's engine. A fire is counted where the worker's
// processor is called. Progress on stderr, one JSON line on stdout.
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { spawn } from 'node:child_process';

const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379/0');
const options = { host: url.hostname, port: Number(url.port || 6379), db: Number((url.pathname || '/0').slice(1) || 0), maxRetriesPerRequest: null };
// BullMQ under native ESM takes constructed clients; each queue and worker gets its own.
const client = () => new IORedis(options);
const sizes = (process.env.SIZES || '10000').split(',').map(Number);
const latenessN = Number(process.env.LATENESS_N || 3000);
const latenessRate = Number(process.env.LATENESS_RATE || 1000);
const log = (...a) => console.error('bullmq', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (v, p) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.round((s.length - 1) * p)] : NaN; };

const admin = client();
async function usedMemory() {
  const info = await admin.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)[1]);
}

// A child that takes jobs and never finishes them, to be killed -9.
if (process.argv[2] === '--hang') {
  const w = new Worker(process.argv[3], () => new Promise(() => {}), { connection: client(), concurrency: 1000, lockDuration: 5000, stalledInterval: 5000 });
  w.on('active', () => {});
  await new Promise(() => {});
}

const out = { lateness: {} };
const largest = Math.max(...sizes);
for (const size of sizes) {
  const name = `whistle-bench-${process.pid}-${size}`;
  const queue = new Queue(name, { connection: client() });
  await queue.waitUntilReady();
  const before = await usedMemory();
  const far = 3_600_000;
  let t0 = performance.now();
  const ids = [];
  const inflight = [];
  for (let i = 0; i < size; i += 1000) {
    const n = Math.min(1000, size - i);
    inflight.push(queue.addBulk(Array.from({ length: n }, (_, j) => ({ name: 't', data: { i: i + j }, opts: { delay: far + ((i + j) % 600000), removeOnComplete: true, removeOnFail: true } }))).then((jobs) => { for (const j of jobs) ids.push(j.id); }));
    if (inflight.length >= 32) { await Promise.all(inflight); inflight.length = 0; }
  }
  await Promise.all(inflight);
  const schedules = size / ((performance.now() - t0) / 1000);
  const bytes = (await usedMemory() - before) / size;
  log(`${size} outstanding: ${schedules.toFixed(0)} schedules/s, ${bytes.toFixed(0)} bytes/job`);

  // Lateness below capacity: a stream of near-term jobs while `size` wait.
  const late = [];
  const worker = new Worker(name, async (job) => { late.push(Date.now() - (job.timestamp + job.opts.delay)); }, { connection: client(), concurrency: 200 });
  await worker.waitUntilReady();
  const gap = 1000 / latenessRate;
  t0 = performance.now();
  for (let i = 0; i < latenessN; i++) {
    const wait = t0 + i * gap - performance.now();
    if (wait > 0) await sleep(wait);
    queue.add('t', {}, { delay: 200, removeOnComplete: true, removeOnFail: true });
  }
  while (late.length < latenessN && performance.now() - t0 < 120000) await sleep(20);
  out.lateness[size] = { p50: pct(late, 0.5), p99: pct(late, 0.99), max: pct(late, 1) };
  log(`${size} outstanding: lateness p50 ${out.lateness[size].p50} ms p99 ${out.lateness[size].p99} ms max ${out.lateness[size].max} ms`);

  // Cancels: a tenth of them.
  const cancelN = Math.max(1, Math.min(Math.floor(size / 10), 50000));
  t0 = performance.now();
  const victims = ids.slice(0, cancelN);
  for (let i = 0; i < victims.length; i += 64) await Promise.all(victims.slice(i, i + 64).map((id) => queue.remove(id)));
  const cancels = cancelN / ((performance.now() - t0) / 1000);
  log(`${size} outstanding: ${cancels.toFixed(0)} cancels/s`);

  // Fires: everything left becomes due at once (promoted) and is processed.
  let fired = 0;
  await worker.close();
  const left = size - cancelN;
  const drain = new Worker(name, async () => { fired++; }, { connection: client(), concurrency: 200, autorun: false });
  await queue.promoteJobs({ count: 10000 });
  t0 = performance.now();
  drain.run();
  while (fired < left && performance.now() - t0 < 600000) await sleep(20);
  const fires = fired / ((performance.now() - t0) / 1000);
  log(`${size} outstanding: ${fires.toFixed(0)} fires/s`);
  await drain.close();
  if (size === largest) Object.assign(out, { schedules, bytes, cancels, fires });
  await queue.obliterate({ force: true });
  await queue.close();
}

// Recovery after kill -9: a worker takes 1000 due jobs and is killed; a new
// worker gets them back when their locks expire (lock and stall check 5 s,
// like Whistle's 5 s claim).
{
  const name = `whistle-bench-${process.pid}-recovery`;
  const queue = new Queue(name, { connection: client() });
  await queue.addBulk(Array.from({ length: 1000 }, (_, i) => ({ name: 't', data: { i }, opts: { removeOnComplete: true } })));
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--hang', name], { stdio: 'ignore' });
  while ((await queue.getActiveCount()) < 1000) await sleep(20);
  child.kill('SIGKILL');
  const killed = performance.now();
  let got = 0;
  const w = new Worker(name, async () => { got++; }, { connection: client(), concurrency: 200, lockDuration: 5000, stalledInterval: 5000 });
  while (got < 1000 && performance.now() - killed < 120000) await sleep(5);
  out.recovery_s = (performance.now() - killed) / 1000;
  log(`recovery after kill -9 with 1000 in flight: ${out.recovery_s.toFixed(2)} s`);
  await w.close();
  await queue.obliterate({ force: true });
  await queue.close();
}
console.log(JSON.stringify(out));
process.exit(0);
