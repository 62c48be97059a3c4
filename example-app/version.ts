export { packageVersion } from '../src/manifest.js'
