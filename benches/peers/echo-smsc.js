// The peer of benches/compare.sh: a minimal SMPP server on node-smpp (npm
// `smpp`) that accepts any bind and answers each submit_sm with
// submit_sm_resp at once. No work, no disk: the cheapest possible "answer"
// an SMPP server can give, measured with the same load tool as the gateway.
//
// Install: (cd benches/peers && npm ci)        # or: npm install
// Start:   node benches/peers/echo-smsc.js [PORT]   (default 2776, loopback)
// It prints {"port": N} once listening and runs until SIGTERM/SIGINT.
'use strict';
const smpp = require('smpp');

const port = Number(process.argv[2] || process.env.ECHO_PORT || 2776);
let nextId = 1;

const server = smpp.createServer({ debug: false }, (session) => {
  const accept = (pdu) => session.send(pdu.response());
  session.on('bind_transceiver', accept);
  session.on('bind_transmitter', accept);
  session.on('bind_receiver', accept);
  session.on('enquire_link', accept);
  session.on('submit_sm', (pdu) => {
    session.send(pdu.response({ message_id: (nextId++).toString(16) }));
  });
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('error', () => session.close());
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
