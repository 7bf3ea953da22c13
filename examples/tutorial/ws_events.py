"""Tutorial 2 of VoIPBIN's architecture tutorial ("Working with Events"), run against callplane.

The published websocket-client script, changed only where it must be:

* the URL, the token and the customer id come from the environment
  (CALLPLANE_WS_URL, default ws://127.0.0.1:8080/v1.0/ws; CALLPLANE_TOKEN; CALLPLANE_CUSTOMER_ID);
* every frame is printed to stdout as one JSON line (the human-readable lines go to
  stderr), and frames that are not events (the server's ack of the subscription, or an
  error) are printed and not handled as events;
* the client exits after `call.ended` (status 0); an error frame, or a connection that
  ends before `call.ended`, makes it exit with status 1.

    CALLPLANE_TOKEN=... CALLPLANE_CUSTOMER_ID=... python3 examples/tutorial/ws_events.py
"""

import json
import os
import sys

import websocket


def handle_call_created(call_data):
    """Process new call"""
    print(f"New call: {call_data['id']}", file=sys.stderr)


def handle_call_answered(call_data):
    """Process answered call"""
    print(f"Call answered: {call_data['id']}", file=sys.stderr)


def handle_call_ended(call_data):
    """Process ended call"""
    print(f"Call ended: {call_data['id']}", file=sys.stderr)

    # Calculate duration
    duration = call_data['duration']
    print(f"Duration: {duration} s", file=sys.stderr)


def on_message(ws, message):
    data = json.loads(message)
    print(json.dumps(data), flush=True)
    if 'event_type' not in data:
        if data.get('type') == 'error':
            print(f"Subscription refused: {data}", file=sys.stderr)
            ws.close()
        return

    print(f"Received event: {data['event_type']}", file=sys.stderr)
    print(f"Call ID: {data['data']['call_id']}", file=sys.stderr)

    if data['event_type'] == 'call.created':
        handle_call_created(data['data'])
    elif data['event_type'] == 'call.answered':
        handle_call_answered(data['data'])
    elif data['event_type'] == 'call.ended':
        handle_call_ended(data['data'])
        ws.exit_status = 0
        ws.close()


def on_open(ws):
    # Subscribe to all call events for this customer
    subscription = {
        "type": "subscribe",
        "topics": [
            f"customer_id:{customer_id}:call:*"
        ]
    }
    ws.send(json.dumps(subscription))
    print("Subscribed to call events", file=sys.stderr)


def on_error(ws, error):
    print(f"WebSocket error: {error}", file=sys.stderr)


token = os.environ["CALLPLANE_TOKEN"]
customer_id = os.environ["CALLPLANE_CUSTOMER_ID"]
ws_url = f"{os.environ.get('CALLPLANE_WS_URL', 'ws://127.0.0.1:8080/v1.0/ws')}?token={token}"

ws = websocket.WebSocketApp(
    ws_url,
    on_open=on_open,
    on_message=on_message,
    on_error=on_error,
)
ws.exit_status = 1

ws.run_forever()
sys.exit(ws.exit_status)
