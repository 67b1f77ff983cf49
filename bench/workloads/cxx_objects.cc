/* cxx_objects: C++ objects the way a service keeps them, through new and
 * delete (the library's operator new and delete where it exports them; the
 * C++ runtime's, which call malloc and free, under glibc).
 *
 * Each of T threads (default 2) makes requests: a std::string key, a
 * std::vector of 1-8 std::string fields (8-64 B), a std::map of 2-6
 * attributes, in a std::shared_ptr (make_shared). It keeps the last 2048 in
 * an LRU cache (std::unordered_map plus std::list), evicting the oldest;
 * every fourth request also goes to the next thread's inbox (a mutex and a
 * std::deque), whose owner drops it after a while, so that the last
 * reference, and the frees, are often on the other thread. Every request is
 * checked when it dies (its fields' checksum against the one made with it).
 * ops = requests made. */
#include "common.h"

#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#define WL "cxx_objects"

namespace {

uint64_t sum_of(const std::string &s, uint64_t h) {
    for (unsigned char c : s) h = h * 1099511628211ull ^ c;
    return h;
}

struct Request {
    std::string key;
    std::vector<std::string> fields;
    std::map<std::string, int> attrs;
    uint64_t sum = 0;

    uint64_t checksum() const {
        uint64_t h = sum_of(key, 14695981039346656037ull);
        for (const auto &f : fields) h = sum_of(f, h);
        for (const auto &a : attrs) h = sum_of(a.first, h) + (uint64_t)a.second;
        return h;
    }
    ~Request() {
        if (checksum() != sum) die(WL, "request corrupted", this, sizeof *this);
    }
};

std::string text(rng_t *r, size_t lo, size_t hi) {
    size_t n = rng_range(r, lo, hi);
    std::string s(n, ' ');
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + rng_below(r, 26));
    return s;
}

std::shared_ptr<Request> make_request(rng_t *r) {
    auto q = std::make_shared<Request>();
    q->key = "user:" + std::to_string(rng_below(r, 1u << 20)) + ":" + text(r, 2, 24);
    size_t nf = rng_range(r, 1, 8);
    for (size_t i = 0; i < nf; i++) q->fields.push_back(text(r, 8, 64));
    size_t na = rng_range(r, 2, 6);
    for (size_t i = 0; i < na; i++) q->attrs[text(r, 3, 12)] = (int)rng_below(r, 1000);
    q->sum = q->checksum();
    return q;
}

struct Inbox {
    std::mutex m;
    std::deque<std::shared_ptr<Request>> q;
};

struct Job {
    int id;
    int threads;
    uint64_t ops;
    Inbox *boxes;
};

void *worker(void *arg) {
    Job *j = (Job *)arg;
    rng_t r;
    rng_seed(&r, 0x5eed + (uint64_t)j->id);
    const size_t cap = 2048;
    std::list<std::string> order;
    std::unordered_map<std::string, std::pair<std::shared_ptr<Request>, std::list<std::string>::iterator>> cache;
    std::deque<std::shared_ptr<Request>> held;
    Inbox &mine = j->boxes[j->id];
    Inbox &next = j->boxes[(j->id + 1) % j->threads];
    for (uint64_t i = 0; i < j->ops; i++) {
        auto q = make_request(&r);
        if (i % 4 == 0) {
            std::lock_guard<std::mutex> g(next.m);
            next.q.push_back(q);
        }
        auto it = cache.find(q->key);
        if (it != cache.end()) {
            order.erase(it->second.second);
            cache.erase(it);
        }
        order.push_front(q->key);
        const std::string &key = order.front();
        cache.emplace(key, std::make_pair(std::move(q), order.begin()));
        if (cache.size() > cap) {
            cache.erase(order.back());
            order.pop_back();
        }
        if (i % 64 == 63) {
            std::deque<std::shared_ptr<Request>> got;
            {
                std::lock_guard<std::mutex> g(mine.m);
                got.swap(mine.q);
            }
            for (auto &p : got) held.push_back(std::move(p));
            while (held.size() > 256) held.pop_front();
        }
    }
    return nullptr;
}

}  // namespace

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    int T = arg_threads(argc, argv, 2);
    uint64_t per = (uint64_t)(100000 * scale);
    if (per < 1000) per = 1000;
    std::vector<Inbox> boxes(T);
    std::vector<Job> jobs(T);
    std::vector<pthread_t> th(T);
    double t0 = now_sec();
    for (int i = 0; i < T; i++) {
        jobs[i] = Job{i, T, per, boxes.data()};
        if (pthread_create(&th[i], nullptr, worker, &jobs[i])) die(WL, "pthread_create failed", nullptr, 0);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], nullptr);
    for (auto &b : boxes) b.q.clear();
    double t1 = now_sec();
    report(WL, T, per * (uint64_t)T, t1 - t0);
    return 0;
}
