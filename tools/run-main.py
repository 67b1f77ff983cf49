import threading, queue, hashlib, os
cpus = sorted(os.sched_getaffinity(0))
def pin(k): os.sched_setaffinity(0, {cpus[k % len(cpus)]})
q = queue.Queue(maxsize=1000)
def produce():
    pin(0)
    for i in range(100000):
        q.put({'id': i, 'name': 'item-%d' % i, 'tags': [str(i % 7), str(i % 11)] * (i % 5)})
    q.put(None)
h = hashlib.sha256()
def consume():
    pin(1)
    while (o := q.get()) is not None:
        h.update(('%d %s %s' % (o['id'], o['name'], ','.join(o['tags']))).encode())
t = [threading.Thread(target=f) for f in (produce, consume)]
[x.start() for x in t]; [x.join() for x in t]
print('digest', h.hexdigest())
