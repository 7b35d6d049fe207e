"""11. Click redirect: requests/s and p95 latency of `GET /l/<token>` (messaging/link_views.py:
verify the token; with REDIS_URL, as here, one Redis round trip reads the cached destination
and buffers the click, which bench/click_flusher.py (the beat task's loop, its own process on
the same machine) writes as touchpoints every CLICK_FLUSH_SECONDS; 302 with UTM) through
gunicorn, against a bare Django view answering the same 302 in the same server, same
settings, same run (`/bench/bare-redirect/<token>`, bench/urls.py).

Data: BENCH_CLICK_MESSAGES sent messages (2 tracked links each, sent two days ago so no click
is "too soon"), made by the product's `links_rewrite`. The token mix per request: 90 % a
random real link (repeats within a minute are deduplicated clicks), 5 % a forged signature
(refused before any query), 5 % a well-signed id that does not exist (one read, 404); every
20th request comes from a link-preview user agent (`clicked_bot`). The bare view gets the
same paths' tokens.

Load: wrk (-t2, BENCH_WRK_CONNECTIONS keep-alive connections, a Lua script picking the
tokens) when it is installed, else a Python generator with the same number of keep-alive
connections (2 processes x threads, http.client); the header says which one measured.

Attribution: `/bench/link-read/<token>` answers the same 302 after the redirect's one indexed
read of the link and records nothing: the floor of any request that touches the database
(with CONN_HEALTH_CHECKS, the product's default, that is two round trips: the check and the
read; the redirect adds the click's INSERT … ON CONFLICT DO NOTHING).

Goals: redirect req/s >= 0.5x the bare view's; p95 latency <= 10x the bare view's.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time

from bench import common as c

WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "4"))
CONNECTIONS = int(os.environ.get("BENCH_WRK_CONNECTIONS", "16"))
DURATION = int(os.environ.get("BENCH_DURATION", "4"))
MESSAGES = int(os.environ.get("BENCH_CLICK_MESSAGES", str(c.scaled(100_000, 1000))))
LUA = str(c.ROOT / "bench" / "clicks.lua")
BOT_AGENT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
HUMAN_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
PATHS = {"redirect": "/l/", "bare": "/bench/bare-redirect/", "read": "/bench/link-read/"}


# --- Data -------------------------------------------------------------------------------


def make_links() -> list[str]:
    """Sent messages with tracked links, made by the product's rewrite; their tokens."""
    import datetime as dt

    from django.db import transaction
    from django.utils import timezone

    from messaging.links import links_rewrite
    from messaging.models import Contact, Message, TrackedLink

    sent_at = timezone.now() - dt.timedelta(days=2)
    contacts = Contact.objects.bulk_create(
        Contact(external_id=f"click-{i}", email=f"c{i}@example.com")
        for i in range(min(MESSAGES, 500))
    )
    messages = Message.objects.bulk_create(
        Message(
            direction="outbound",
            channel="email" if n % 3 else "sms",
            contact=contacts[n % len(contacts)],
            to_address="x",
            status="delivered",
            sent_at=sent_at,
            delivered_at=sent_at,
            metadata={"journey": "cart", "step": "remind"} if n % 2 else {"broadcast": "sale"},
        )
        for n in range(MESSAGES)
    )
    with transaction.atomic():
        for message in messages:
            links_rewrite(
                message_id=message.pk,
                body=f"Your cart: https://shop.example.com/cart/{message.pk} "
                "and our offers https://shop.example.com/offers?src=mail",
                html_body="",
            )
    from messaging.click_buffer import links_cache
    from messaging.links import link_destination, link_token

    # What message_create does when the message commits (messaging/services/messages.py).
    links = TrackedLink.objects.values_list("pk", "url", "message__channel", "message__metadata")
    links_cache(
        {
            pk: link_destination(url=url, channel=channel, metadata=meta, template_slug="")
            for pk, url, channel, meta in links
        }
    )
    return [link_token(pk) for pk, *_ in links]


def token_mix(tokens: list[str], n: int, seed: int) -> list[str]:
    """n tokens: 90 % real, 5 % forged signature, 5 % a signed id that does not exist."""
    from messaging.links import link_token

    rng = random.Random(seed)
    missing = [link_token(10**9 + i) for i in range(50)]
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.90:
            out.append(rng.choice(tokens))
        elif roll < 0.95:
            real = rng.choice(tokens)
            out.append(real[:-1] + ("A" if real[-1] != "A" else "B"))
        else:
            out.append(rng.choice(missing))
    return out


# --- Load generators --------------------------------------------------------------------


def wrk(port: int, path: str, tokens_file: str, seconds: int) -> dict:
    out = subprocess.run(
        [
            *("wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", LUA),
            *(f"http://127.0.0.1:{port}", "--", path, tokens_file, BOT_AGENT, HUMAN_AGENT),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"RESULT (.*)", out.stdout)
    if not match:
        raise RuntimeError(f"wrk said: {out.stdout}\n{out.stderr}")
    fields = {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    return {
        "rps": fields["requests"] / (fields["duration_us"] / 1e6),
        "p95_ms": fields["p95_us"] / 1000,
        "unexpected": fields["errors_status"],
    }


def _connection_loop(port, path, tokens, deadline, seed, latencies, statuses) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = rng.randrange(len(tokens))
    while time.perf_counter() < deadline:
        n += 1
        agent = BOT_AGENT if n % 20 == 0 else HUMAN_AGENT
        started = time.perf_counter()
        try:
            conn.request("GET", path + tokens[n % len(tokens)], headers={"User-Agent": agent})
            response = conn.getresponse()
            response.read()
        except OSError as exc:  # a timeout or a dropped connection: counted, reconnected
            name = type(exc).__name__
            statuses[name] = statuses.get(name, 0) + 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        latencies.append(time.perf_counter() - started)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    conn.close()


def _process(args) -> tuple[list[float], dict, float]:
    port, path, tokens, seconds, threads, seed = args
    latencies: list[float] = []
    statuses: dict = {}
    start = time.perf_counter()
    deadline = start + seconds
    workers = [
        threading.Thread(
            target=_connection_loop,
            args=(port, path, tokens, deadline, seed * 100 + i, latencies, statuses),
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, statuses, time.perf_counter() - start


def _forget_children() -> None:
    # A forked client must not stop the server on its way out (bench.common's SIGTERM
    # handler and atexit stop every child the parent started).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    c._children.clear()


def python_load(port: int, path: str, tokens: list[str], seconds: int) -> dict:
    """CONNECTIONS keep-alive connections over 2 processes (threads in each)."""
    processes = 2
    threads = max(1, CONNECTIONS // processes)
    pool = multiprocessing.get_context("fork").Pool(processes, initializer=_forget_children)
    try:
        parts = pool.map(
            _process, [(port, path, tokens, seconds, threads, p) for p in range(processes)]
        )
        pool.close()
    finally:
        pool.join()
    latencies = [x for part in parts for x in part[0]]
    elapsed = max(part[2] for part in parts)
    statuses: dict = {}
    for part in parts:
        for status, n in part[1].items():
            statuses[status] = statuses.get(status, 0) + n
    return {
        "rps": len(latencies) / elapsed,
        "p95_ms": c.percentile(latencies, 95) * 1000,
        "statuses": statuses,
    }


# --- The benchmark ----------------------------------------------------------------------


def main() -> None:
    use_wrk = bool(shutil.which("wrk"))
    generator = (
        f"wrk -t2 -c{CONNECTIONS}, Lua token mix"
        if use_wrk
        else f"Python (wrk is missing): 2 processes x {CONNECTIONS // 2} threads, "
        "http.client keep-alive"
    )
    c.django_setup()
    c.header(
        "11. Click redirect",
        server=f"gunicorn gthread {WORKERS} workers x {THREADS} threads, keep-alive",
        client=f"{generator}; {DURATION} s per run",
        links=f"{MESSAGES} messages x 2 tracked links",
    )
    with c.bench_services():
        from messaging.models import Touchpoint

        tokens = make_links()
        mix = token_mix(tokens, 20_000, seed=14)
        tokens_file = c.DATA_DIR / "click_tokens.txt"
        tokens_file.write_text("\n".join(mix) + "\n")
        port = c.free_port()
        server = c.start(
            "gunicorn-clicks",
            [
                *(c.PYTHON, "-m", "gunicorn", "config.wsgi:application"),
                *("-b", f"127.0.0.1:{port}", "--worker-class", "gthread"),
                *("--workers", str(WORKERS), "--threads", str(THREADS), "--keep-alive", "30"),
                *("--log-level", "warning"),
            ],
            DJANGO_SETTINGS_MODULE="bench.settings",
        )
        c.wait_for_port(port, server)
        # With REDIS_URL (as here) clicks are buffered; this writes them as beat would.
        flusher = c.start("click-flusher", [c.PYTHON, "-m", "bench.click_flusher"])

        def measure(name: str, seconds: int) -> dict:
            if use_wrk:
                return wrk(port, PATHS[name], str(tokens_file), seconds)
            return python_load(port, PATHS[name], mix, seconds)

        # Warm-up: every worker imports and connects. On a loaded machine gunicorn's workers
        # take longer than a round to boot (the first runs measured 0 req/s): rounds until
        # every path answers in one, then one more.
        for _ in range(15):
            if all(measure(name, 2)["rps"] > 0 for name in PATHS):
                break
        for name in PATHS:
            measure(name, 2)
        time.sleep(1)
        rps: dict[str, list[float]] = {name: [] for name in PATHS}
        p95: dict[str, list[float]] = {name: [] for name in PATHS}
        other: dict[str, dict] = {name: {} for name in PATHS}
        for _ in range(c.RUNS):
            for name in ("bare", "read", "redirect"):
                out = measure(name, DURATION)
                print(
                    f"    {name}: {out['rps']:.1f} req/s, p95 {out['p95_ms']:.1f} ms, "
                    f"{out.get('statuses', out.get('unexpected'))}",
                    flush=True,
                )
                rps[name].append(out["rps"])
                p95[name].append(out["p95_ms"])
                for status, n in out.get("statuses", {}).items():
                    other[name][status] = other[name].get(status, 0) + n
                if "unexpected" in out:
                    other[name]["4xx (forged or unknown)"] = (
                        other[name].get("4xx (forged or unknown)", 0) + (out["unexpected"])
                    )
        c.stop(flusher)
        from messaging.click_buffer import clicks_flush

        clicks_flush()  # what the flusher had not written yet
        clicks = Touchpoint.objects.filter(kind="clicked").count()
        bots = Touchpoint.objects.filter(kind="clicked_bot").count()
        c.stop(server)
        notes = {
            "load generator": "wrk" if use_wrk else "python (wrk missing)",
            "responses by status (302 real, 404 forged or unknown)": other,
            "click touchpoints recorded (deduplicated per link per minute)": (
                f"{clicks} clicked, {bots} clicked_bot"
            ),
            "p95 latency ms (per run)": {k: [round(v, 2) for v in vs] for k, vs in p95.items()},
        }
        c.report(
            c.Figure(
                "clicks",
                "GET /l/<token> (tracked-link redirect)",
                "req/s",
                rps["redirect"],
                "bare Django 302 view",
                rps["bare"],
                goal=">= 0.5",
                notes=notes,
            )
        )
        c.report(
            c.Figure(
                "clicks",
                "one indexed read of the link, no click recorded (attribution)",
                "req/s",
                rps["read"],
                "bare Django 302 view",
                rps["bare"],
            )
        )
        c.report(
            c.Figure(
                "clicks",
                "GET /l/<token> p95 latency",
                "ms",
                p95["redirect"],
                "bare Django 302 view p95",
                p95["bare"],
                goal="<= 10",
                higher_is_better=False,
            )
        )


if __name__ == "__main__":
    main()
