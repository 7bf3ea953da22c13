"""The client code of VoIPBIN's architecture tutorial (Tutorials 1, 3, 5 and 6 of
seeds/002), run against callplane.

The functions below are the published ones. They are changed only where they must be:
the API base URL and token come from the environment (CALLPLANE_API_BASE, e.g.
http://127.0.0.1:8080/v1.0, and CALLPLANE_TOKEN), as does the address of the client's
own Redis (TUTORIAL_REDIS_HOST, TUTORIAL_REDIS_PORT). main() runs them in the order of
the tutorial and prints one JSON object with what it saw.
"""

import concurrent.futures
import json
import logging
import os
import sys
import time

import redis
import requests
from requests.adapters import HTTPAdapter
from requests.packages.urllib3.util.retry import Retry

logging.basicConfig(level=logging.WARNING)
logger = logging.getLogger(__name__)

# Initialize Redis client
redis_client = redis.Redis(
    host=os.environ.get("TUTORIAL_REDIS_HOST", "localhost"),
    port=int(os.environ.get("TUTORIAL_REDIS_PORT", "6379")),
    db=0,
    decode_responses=True
)

# VoIPBIN API configuration
API_BASE = os.environ["CALLPLANE_API_BASE"]
AUTH_TOKEN = os.environ["CALLPLANE_TOKEN"]


# Tutorial 3, step 2: cache-aside on the client.
def get_call(call_id):
    """Get call with cache-aside pattern"""

    # 1. Check cache first
    cache_key = f"call:{call_id}"
    cached_data = redis_client.get(cache_key)

    if cached_data:
        print("Cache HIT", file=sys.stderr)
        return json.loads(cached_data)

    print("Cache MISS - fetching from API", file=sys.stderr)

    # 2. Cache miss - fetch from API
    response = requests.get(
        f"{API_BASE}/calls/{call_id}",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}"}
    )

    if response.status_code != 200:
        return None

    call_data = response.json()

    # 3. Store in cache for next time
    redis_client.setex(
        cache_key,
        300,  # 5 minutes TTL
        json.dumps(call_data)
    )

    return call_data


# Tutorial 3, step 3.
def update_call_status(call_id, new_status):
    """Update call status and invalidate cache"""

    # 1. Update via API
    response = requests.patch(
        f"{API_BASE}/calls/{call_id}",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}"},
        json={"status": new_status}
    )

    if response.status_code != 200:
        return False

    # 2. Invalidate cache
    cache_key = f"call:{call_id}"
    redis_client.delete(cache_key)

    print(f"Cache invalidated for {call_id}", file=sys.stderr)
    return True


# Tutorial 5, step 1.
def create_api_client():
    """Create API client with retry logic"""

    session = requests.Session()

    # Configure retry strategy
    retry_strategy = Retry(
        total=5,  # Max retries
        backoff_factor=1,  # Wait 1, 2, 4, 8, 16 seconds
        status_forcelist=[500, 502, 503, 504],  # Retry on these status codes
        allowed_methods=["GET", "POST", "PUT", "DELETE"]
    )

    adapter = HTTPAdapter(max_retries=retry_strategy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)

    return session


# Tutorial 5, step 2.
def make_api_call_with_retry(url, method="GET", max_retries=5, **kwargs):
    """Make API call with custom retry logic and logging"""

    for attempt in range(max_retries):
        try:
            logger.info(f"Attempt {attempt + 1}/{max_retries}: {method} {url}")

            response = requests.request(method, url, **kwargs)

            # Check for success
            if 200 <= response.status_code < 300:
                logger.info(f"Success on attempt {attempt + 1}")
                return response

            # Check if we should retry
            if response.status_code in [500, 502, 503, 504]:
                # Transient error - retry
                if attempt < max_retries - 1:
                    wait_time = 2 ** attempt  # Exponential backoff
                    logger.warning(
                        f"Retryable error {response.status_code}. "
                        f"Waiting {wait_time}s before retry."
                    )
                    time.sleep(wait_time)
                    continue

            # Permanent error or max retries - don't retry
            logger.error(f"Failed with status {response.status_code}")
            return response

        except requests.exceptions.RequestException as e:
            # Network error - retry
            if attempt < max_retries - 1:
                wait_time = 2 ** attempt
                logger.warning(f"Network error: {e}. Retrying in {wait_time}s...")
                time.sleep(wait_time)
            else:
                logger.error(f"Max retries exceeded. Last error: {e}")
                raise

    return None


# Tutorial 6, technique 1.
def create_call(call_data):
    response = requests.post(
        f"{API_BASE}/calls",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}"},
        json=call_data
    )
    return response.json()


def create_calls_parallel(call_list):
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as executor:
        results = list(executor.map(create_call, call_list))
    return results


# Tutorial 6, technique 4.
def get_all_calls_paginated(customer_id):
    """Efficiently fetch all calls using pagination"""

    all_calls = []
    page_size = 100
    offset = 0

    while True:
        response = requests.get(
            f"{API_BASE}/calls",
            headers={"Authorization": f"Bearer {AUTH_TOKEN}"},
            params={
                "customer_id": customer_id,
                "limit": page_size,
                "offset": offset
            }
        )

        data = response.json()
        calls = data.get('result', [])

        if not calls:
            break

        all_calls.extend(calls)
        offset += page_size

    return all_calls


def main():
    seen = {}
    call_data = {
        "source": {"type": "tel", "target": "+15551234567"},
        "destinations": [{"type": "tel", "target": "+15559876543"}]
    }

    # Tutorial 1: the request of step 1.
    response = requests.post(
        f"{API_BASE}/calls",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}", "Content-Type": "application/json"},
        data=json.dumps(call_data),
    )
    seen["create_status"] = response.status_code
    first = response.json()
    seen["first_call"] = first

    # Tutorial 5: the retrying session and the hand-written retry loop.
    api_client = create_api_client()
    response = api_client.post(
        f"{API_BASE}/calls",
        headers={"Authorization": f"Bearer {AUTH_TOKEN}"},
        json=call_data,
    )
    seen["retry_client_status"] = response.status_code
    response = make_api_call_with_retry(
        f"{API_BASE}/calls/{first['id']}", headers={"Authorization": f"Bearer {AUTH_TOKEN}"}
    )
    seen["retry_loop_status"] = response.status_code

    # Tutorial 6: 100 calls in parallel, then every call through limit/offset pages.
    created = create_calls_parallel([call_data] * 100)
    seen["parallel_ids"] = [c.get("id") for c in created]
    seen["all_ids"] = [c["id"] for c in get_all_calls_paginated(first["customer_id"])]

    # Tutorial 3: miss, hit, update, and the fresh state after.
    redis_client.delete(f"call:{first['id']}")
    start = time.time()
    get_call(first["id"])
    uncached_time = time.time() - start
    start = time.time()
    cached = get_call(first["id"])
    cached_time = time.time() - start
    seen["cached_id"] = cached["id"]
    seen["updated"] = update_call_status(first["id"], "ended")
    time.sleep(0.5)
    seen["after_update"] = get_call(first["id"])["status"]
    seen["timings"] = {"uncached": uncached_time, "cached": cached_time}

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
