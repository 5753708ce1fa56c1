// Tracks every event type the official @snowplow/node-tracker offers to a collector, then
// prints one JSON line per event: {"name", "eid", "valid"}. Driven by tests/test_js_trackers.py.
//
//   node node_tracker.mjs ENDPOINT post|get base64|plain [anonymous]
import {
  newTracker, buildAdClick, buildAdConversion, buildAdImpression, buildAddToCart,
  buildConsentGranted, buildConsentWithdrawn, buildEcommerceTransaction,
  buildEcommerceTransactionItem, buildFormFocusOrChange, buildFormSubmission, buildLinkClick,
  buildPagePing, buildPageView, buildRemoveFromCart, buildScreenView, buildSelfDescribingEvent,
  buildSiteSearch, buildSocialInteraction, buildStructEvent,
} from '@snowplow/node-tracker';

const [endpoint, method, encoding, anonymous] = process.argv.slice(2);
const failures = [];
const tracker = newTracker(
  { namespace: 'node-' + method + '-' + encoding, appId: 'js-clients',
    encodeBase64: encoding === 'base64' },
  { endpoint, eventMethod: method, bufferSize: method === 'post' ? 5 : 1,
    serverAnonymization: anonymous === 'anonymous',
    onRequestFailure: (failure) => failures.push(String(failure.message || failure.status)) });
tracker.setUserId('user-1');
tracker.setDomainUserId('5cea9899-10df-4ccf-bf66-8c36f4a4bba2');

const SP = 'iglu:com.snowplowanalytics.snowplow/';
const page = { schema: SP + 'web_page/jsonschema/1-0-0',
               data: { id: '0a5e24b6-0df8-4b2e-ae2a-2a0bf8d9c1b4' } };
const badPage = { schema: SP + 'web_page/jsonschema/1-0-0', data: { id: 'not-a-uuid' } };

// name -> [payload builder (or {event, context}), context entities, valid?]
const events = [
  ['page view', buildPageView({ pageUrl: 'https://shop.example/a?b=c', pageTitle: 'A',
                                referrer: 'https://ref.example/' }), [page], true],
  ['page ping', buildPagePing({ pageUrl: 'https://shop.example/a', minXOffset: 0,
                                maxXOffset: 10, minYOffset: 5, maxYOffset: 500 }), [page], true],
  ['structured', buildStructEvent({ category: 'shop', action: 'buy', label: 'l',
                                    property: 'p', value: 2.5 }), [page], true],
  ['self-describing', buildSelfDescribingEvent({ event: {
    schema: SP + 'link_click/jsonschema/1-0-1', data: { targetUrl: 'https://x.example' } } }),
   [page], true],
  ['transaction', buildEcommerceTransaction({ orderId: 'o-1', total: 20, affiliation: 'a',
    tax: 2, shipping: 3, city: 'Paris', state: 'IDF', country: 'FR', currency: 'EUR' }), [],
   true],
  ['transaction item', buildEcommerceTransactionItem({ orderId: 'o-1', sku: 'sku-1',
    price: 5, name: 'n', category: 'c', quantity: 2, currency: 'EUR' }), [], true],
  ['screen view', buildScreenView({ name: 'home', id: 'screen-1' }), [page], true],
  ['link click', buildLinkClick({ targetUrl: 'https://x.example', elementId: 'a1',
    elementClasses: ['c'], elementTarget: '_blank', elementContent: 'text' }), [], true],
  ['ad impression', buildAdImpression({ impressionId: 'i', costModel: 'cpm', cost: 5.5,
    targetUrl: 'https://ad.example', bannerId: 'b', zoneId: 'z', advertiserId: 'ad',
    campaignId: 'c' }), [page], true],
  ['ad click', buildAdClick({ targetUrl: 'https://ad.example', clickId: 'k',
    costModel: 'cpc', cost: 0.5, bannerId: 'b', zoneId: 'z', impressionId: 'i',
    advertiserId: 'ad', campaignId: 'c' }), [], true],
  ['ad conversion', buildAdConversion({ conversionId: 'v', costModel: 'cpa', cost: 10,
    category: 'c', action: 'a', property: 'p', initialValue: 99, advertiserId: 'ad',
    campaignId: 'c' }), [], true],
  ['social interaction', buildSocialInteraction({ action: 'like', network: 'fb',
                                                  target: 'post-1' }), [], true],
  ['add to cart', buildAddToCart({ sku: 's', quantity: 2, name: 'n', category: 'c',
                                   unitPrice: 9.99, currency: 'EUR' }), [], true],
  ['remove from cart', buildRemoveFromCart({ sku: 's', quantity: 1 }), [], true],
  ['focus form', buildFormFocusOrChange({ schema: 'focus_form', formId: 'f',
    elementId: 'e', nodeName: 'INPUT', value: 'v', type: 'text', elementClasses: ['c'] }), [],
   true],
  ['change form', buildFormFocusOrChange({ schema: 'change_form', formId: 'f',
    elementId: 'e', nodeName: 'SELECT', value: null, type: null, elementClasses: null }), [],
   true],
  ['form submission', buildFormSubmission({ formId: 'f', formClasses: ['c'], elements: [
    { name: 'email', value: 'a@b.c', nodeName: 'INPUT', type: 'email' }] }), [], true],
  ['site search', buildSiteSearch({ terms: ['a', 'b'], filters: { k: true, j: 'v' },
                                    totalResults: 10, pageResults: 5 }), [], true],
  ['consent granted', buildConsentGranted({ id: 'doc-1', version: '1.0', name: 'n',
    description: 'd', expiry: '2030-01-01T00:00:00Z' }), [], true],
  ['consent withdrawn', buildConsentWithdrawn({ all: false, id: 'doc-1', version: '1.0',
                                                name: 'n', description: 'd' }), [], true],
  // invalid: each must arrive bad with a reason
  ['unknown schema', buildSelfDescribingEvent({ event: {
    schema: 'iglu:com.acme/unknown/jsonschema/1-0-0', data: {} } }), [], false],
  ['invalid event data', buildAddToCart({ sku: 's', quantity: 'two' }), [], false],
  ['invalid context', buildStructEvent({ category: 'c', action: 'a' }), [badPage], false],
  ['category too long', buildStructEvent({ category: 'c'.repeat(1001), action: 'a' }), [],
   false],
];

for (const [name, built, context, valid] of events) {
  const withContext = built.event ? built : { event: built, context: [] };
  const payload = tracker.track(withContext.event, [...withContext.context, ...context]);
  console.log(JSON.stringify({ name, eid: payload.eid, valid }));
}
await tracker.flush();
if (failures.length) {
  console.error('requests failed: ' + failures.join('; '));
  process.exit(1);
}
