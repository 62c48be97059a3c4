import { connect, type PeerCertificate } from 'node:tls'

/** The certificate a TLS server presents for `servername` to a client trusting only `ca`. */
export async function peerCertificate (port: number, servername: string, ca: string | string[]): Promise<PeerCertificate> {
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername, ca }, () => {
      const certificate = socket.getPeerCertificate()
      socket.end()
      resolve(certificate)
    })
    socket.on('error', reject)
  })
}
