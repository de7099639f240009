// Interop: node-smpp (code nobody here wrote) plays the operator's USSDC/SMSC
// and the gateway binds to it (the gateway's ESME role).
//
// Usage: node node_smsc.js SUBSCRIBER_MSISDN
// Prints {"port": N} first, then one JSON line per event; exits by itself.
'use strict';
const smpp = require('smpp');

const msisdn = process.argv[2];
const events = [];
function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function messageHex(sm) {
  if (sm === undefined || sm === null) return '';
  if (Buffer.isBuffer(sm)) return sm.toString('hex');
  if (typeof sm === 'string') return Buffer.from(sm, 'utf8').toString('hex');
  if (sm.message !== undefined) {
    const m = Buffer.isBuffer(sm.message) ? sm.message : Buffer.from(String(sm.message), 'utf16le').swap16();
    const udh = sm.udh ? Buffer.concat(sm.udh.map((u) => Buffer.from(u))) : Buffer.alloc(0);
    return udh.toString('hex') + '|' + m.toString('hex');
  }
  return '';
}

function text(sm) {
  if (sm === undefined || sm === null) return '';
  if (typeof sm === 'string') return sm;
  if (Buffer.isBuffer(sm)) return sm.toString('latin1');
  if (sm.message !== undefined) return String(sm.message);
  return '';
}

let ussdAnswered = false;
let trafficSent = false;
let smsFrom9290 = 0;
const server = smpp.createServer({ debug: false }, (session) => {
  session.on('bind_transceiver', (pdu) => {
    if (pdu.system_id !== 'gw' || pdu.password !== 'secret') {
      emit({ bind: 'refused', system_id: pdu.system_id });
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    emit({ bind: 'ok', system_id: pdu.system_id });
    session.send(pdu.response({ system_id: 'node-smsc' }));
    // After our unbind the gateway reconnects, as an ESME should; the
    // traffic is sent on the first bind only.
    if (trafficSent) return;
    trafficSent = true;
    // 1. USSD *929# (PSSR indication) with a session the answer must echo.
    session.deliver_sm({
      service_type: 'USSD',
      source_addr_ton: 1, source_addr_npi: 1, source_addr: msisdn,
      destination_addr: '929',
      short_message: '*929#',
      ussd_service_op: 1,
      // node-smpp types its_session_info as raw octets.
      its_session_info: Buffer.from([0x42, 0x00]),
    }, (resp) => emit({ deliver_resp: 'ussd', status: resp.command_status }));
    // 2. A delivery receipt from the subscriber to 9290: must not renew.
    session.deliver_sm({
      source_addr_ton: 1, source_addr_npi: 1, source_addr: msisdn,
      destination_addr: '9290',
      esm_class: 0x04,
      short_message: 'id:m1 sub:001 dlvrd:001 submit date:2611221000 done date:2611221000 stat:DELIVRD err:000 text:',
      receipted_message_id: 'm1',
      message_state: 2,
    }, (resp) => emit({ deliver_resp: 'receipt', status: resp.command_status }));
  });
  session.on('submit_sm', (pdu) => {
    session.send(pdu.response({ message_id: 'n' + Date.now() }));
    const e = {
      command: 'submit_sm',
      source: pdu.source_addr,
      dest: pdu.destination_addr,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      ussd_service_op: pdu.ussd_service_op === undefined ? null : pdu.ussd_service_op,
      its_session_info: Buffer.isBuffer(pdu.its_session_info) && pdu.its_session_info.length === 2
        ? pdu.its_session_info.readUInt16BE(0) : null,
      text: text(pdu.short_message),
    };
    emit(e);
    if (e.ussd_service_op === 17) ussdAnswered = true;
    if (e.source === '9290') smsFrom9290 += 1;
    if (ussdAnswered && smsFrom9290 >= 1) {
      setTimeout(() => { session.unbind(); setTimeout(() => process.exit(0), 300); }, 500);
    }
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('error', (err) => emit({ error: String(err) }));
});

server.listen(0, '127.0.0.1', () => emit({ port: server.address().port }));
setTimeout(() => { emit({ timeout: true }); process.exit(3); }, 20000);
