"""Interop: the Python SMPP client `smpplib` (code nobody here wrote) binds
to the gateway's listener (MC role) and renews by USSD and by SMS.

Usage: smpplib_client.py HOST PORT SUBSCRIBER_MSISDN
Prints one JSON line per answer the gateway sent, then exits 0; any protocol
problem raises (non-zero exit). The Rust test decides what is right.
"""
import json
import sys

import smpplib.client
import smpplib.command
import smpplib.consts

# smpplib's DeliverSM lacks ussd_service_op (its issue tracker suggests
# adding it at run time); the gateway answers USSD with deliver_sm op 17.
smpplib.command.DeliverSM.params["ussd_service_op"] = smpplib.command.Param(type=int, size=1)
smpplib.command.DeliverSM.params_order = tuple(smpplib.command.DeliverSM.params_order) + ("ussd_service_op",)

host, port, msisdn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
answers = []


def on_message(pdu):
    answers.append({
        "command": pdu.command,
        "source": pdu.source_addr.decode() if isinstance(pdu.source_addr, bytes) else pdu.source_addr,
        "dest": pdu.destination_addr.decode() if isinstance(pdu.destination_addr, bytes) else pdu.destination_addr,
        "data_coding": pdu.data_coding,
        "esm_class": pdu.esm_class,
        "ussd_service_op": getattr(pdu, "ussd_service_op", None),
        "its_session_info": getattr(pdu, "its_session_info", None),
        "short_message_hex": (pdu.short_message or b"").hex(),
    })


client = smpplib.client.Client(host, port, allow_unknown_opt_params=True, timeout=10)
client.set_message_received_handler(on_message)
client.connect()
client.bind_transceiver(system_id="demo", password="demo")

# USSD *929# (PSSR indication) with a session id the answer must echo.
client.send_message(
    service_type="USSD",
    source_addr_ton=1, source_addr_npi=1, source_addr=msisdn,
    dest_addr_ton=0, dest_addr_npi=0, destination_addr="929",
    short_message=b"*929#", data_coding=0,
    ussd_service_op=1, its_session_info=0x2A00,
)
# Any SMS to 9290 renews; the answer comes as an SMS from 9290.
client.send_message(
    source_addr_ton=1, source_addr_npi=1, source_addr=msisdn,
    dest_addr_ton=0, dest_addr_npi=0, destination_addr="9290",
    short_message=b"", data_coding=0,
)
# Expect: USSD answer + USSD confirmation SMS (maybe multi-part) + SMS answer.
import time
deadline = time.time() + 15
while time.time() < deadline and (
    not any(a["ussd_service_op"] == 17 for a in answers)
    or sum(1 for a in answers if a["source"] == "9290") < 2
):
    client.read_once()
client.unbind()
client.disconnect()
for a in answers:
    print(json.dumps(a))
