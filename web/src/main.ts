import { render } from 'lit-html';
import { App } from './app';
import { appView } from './view';
import './style.css';

const root = document.getElementById('app')!;
const app = new App();
let queued = false;
const draw = () => {
  queued = false;
  render(appView(app), root);
};
app.onChange(() => {
  if (!queued) {
    queued = true;
    requestAnimationFrame(draw);
  }
});
// Countdowns move every second even between blocks.
setInterval(() => app.changed(), 1000);
draw();
void app.start();
// For debugging in the browser console.
(window as unknown as { p2peApp: App }).p2peApp = app;
