// The link warning page (/link): what someone sees when a linking URL is opened as a link (clicked, pasted).
// It never reads or acts on the URL fragment; it only drops it from the address bar and this history entry.
import "../ui/styles.css";

history.replaceState(null, "", location.pathname);
