"""The webhook receiver of VoIPBIN's Tutorial 4 ("Building a Webhook Handler", Step 1),
run against callplane.

Changed from the published code only where it must be:

* the secret and the port come from the environment (WEBHOOK_SECRET, PORT), and the
  app is started at the bottom (the tutorial runs it under `flask run` behind ngrok);
* the handlers the tutorial leaves to the reader are defined: each verified payload is
  appended as one JSON line to the file named by WEBHOOK_RECEIVED_FILE (if set).

`verify_signature` is exactly as published.

    WEBHOOK_SECRET=<secret from POST /v1.0/webhooks> PORT=5000 python webhook_receiver.py
"""

import json
import os

from flask import Flask, request, jsonify
import hmac
import hashlib

app = Flask(__name__)
WEBHOOK_SECRET = os.environ["WEBHOOK_SECRET"]
RECEIVED_FILE = os.environ.get("WEBHOOK_RECEIVED_FILE")

@app.route('/webhooks/voipbin', methods=['POST'])
def voipbin_webhook():
    # 1. Verify signature
    if not verify_signature(request):
        return jsonify({'error': 'Invalid signature'}), 403

    # 2. Parse payload
    payload = request.get_json()
    event_type = payload.get('event_type')
    record(payload)

    # 3. Process event
    if event_type == 'call.created':
        handle_call_created(payload['data'])
    elif event_type == 'call.ended':
        handle_call_ended(payload['data'])
    elif event_type == 'sms.sent':
        handle_sms_sent(payload['data'])

    # 4. Acknowledge receipt
    return jsonify({'status': 'received'}), 200

def verify_signature(request):
    """Verify webhook signature for security"""
    signature = request.headers.get('X-VoIPBIN-Signature')
    if not signature:
        return False

    # Compute expected signature
    expected = hmac.new(
        WEBHOOK_SECRET.encode(),
        request.data,
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)

def record(payload):
    """Appends a verified payload to WEBHOOK_RECEIVED_FILE, one JSON object a line."""
    if RECEIVED_FILE:
        with open(RECEIVED_FILE, 'a') as f:
            f.write(json.dumps(payload) + '\n')

def handle_call_created(call_data):
    print(f"call {call_data['id']} created", flush=True)

def handle_call_ended(call_data):
    print(f"call {call_data['id']} ended after {call_data['duration']} s", flush=True)

def handle_sms_sent(sms_data):
    print(f"message {sms_data['id']} sent", flush=True)

if __name__ == '__main__':
    app.run(host='127.0.0.1', port=int(os.environ.get('PORT', '5000')))
